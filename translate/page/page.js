// The page of `translate serve`: the lab (one card per model, filled from POST /translate; cards.js,
// attention.js), growing a test example sentence by sentence (grow.js), and the evidence (evidence.js).

import {card, show} from "./cards.js";
import {$, element, getJSON} from "./dom.js";
import {loadEvidence} from "./evidence.js";
import {forgetExample, setupGrow} from "./grow.js";

let latest = 0; // the newest request's number: an older answer arriving after it is dropped

// The /translate body: every model, the source text, and what the cards show.
function request() {
  const beam = Number($("beam").value);
  const body = {text: $("source").value, model: "all", beam_size: beam,
                attention: $("attention").checked, saliency: $("saliency").checked,
                split_sentences: !$("whole").checked};
  if (Number.isInteger(beam) && beam > 1) body.n_best = Math.min(5, beam);
  const reference = $("reference").value.trim();
  if (reference) body.reference = reference;
  return body;
}

async function translate() {
  const mine = ++latest;
  $("error").textContent = "";
  $("status").textContent = "translating…";
  try {
    const body = await getJSON("/translate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(request()),
    });
    if (mine !== latest) return;
    for (const [name, result] of Object.entries(body.results)) {
      const node = document.querySelector(`.model[data-model="${CSS.escape(name)}"]`);
      if (node) show(node, result);
    }
    $("status").textContent = "done";
  } catch (error) {
    if (mine !== latest) return;
    $("error").textContent = error.message;
    $("status").textContent = "";
  }
}

// A sentence from the evidence into the lab, translated with its reference.
function tryIt(source, reference) {
  forgetExample();
  $("source").value = source;
  $("reference").value = reference;
  translate();
  $("lab").scrollIntoView({block: "start"});
}

async function loadModels() {
  try {
    const models = (await getJSON("/models")).models;
    $("models").replaceChildren(...models.map(card));
    if (models.length && models[0].languages.length) $("language").textContent = models[0].languages.join(" → ");
  } catch (error) {
    $("error").textContent = `Could not load the models: ${error.message}`;
  }
}

async function loadFigures() {
  try {
    for (const figure of (await getJSON("/figures")).figures) {
      const link = element("a", "", figure.title);
      link.href = figure.url;
      const item = element("li");
      item.append(link);
      $("figures").append(item);
    }
  } catch (error) {
    $("figures").append(element("li", "failed", `Could not list the figures: ${error.message}`));
  }
}

$("form").addEventListener("submit", (event) => {
  event.preventDefault();
  translate();
});
loadModels();
loadFigures();
setupGrow(translate);
loadEvidence(tryIt);

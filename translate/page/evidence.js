// The evidence: the report's BLEU by source length as an interactive chart (GET /evidence), and a
// bucket's sentences with each model's stored translation and chrF (GET /evidence/{bucket}).

import {$, button, element, getJSON, say, svg} from "./dom.js";

const COLOURS = ["#0072b2", "#e69f00", "#009e73", "#cc79a7", "#56b4e9", "#d55e00"]; // Okabe–Ito
const CHART = {group: 120, left: 44, top: 14, plot: 220, bottom: 44};
let shown = 0; // the number of the latest bucket asked for: an older one arriving after it is dropped

// `onTry(source, reference)` puts a sentence into the lab and translates it.
export async function loadEvidence(onTry) {
  let evidence;
  try {
    evidence = await getJSON("/evidence");
  } catch (error) {
    say("evidence-status", `No evidence to show: ${error.message}`, true);
    return;
  }
  const select = (bucket) => showBucket(bucket, evidence.models, onTry);
  $("evidence-about").textContent = about(evidence);
  $("evidence-chart").replaceChildren(chart(evidence, select));
  $("evidence-legend").replaceChildren(...evidence.models.map(legendItem));
  $("buckets").replaceChildren(element("span", "label", "Sentences of:"), ...evidence.buckets.map((bucket) => {
    const node = button(`${bucket.bucket} words (${bucket.sentences})`, "bucket", () => select(bucket.bucket));
    node.dataset.bucket = bucket.bucket;
    return node;
  }));
  if (evidence.figure) $("evidence-about").append(" ", link("The report's figure", evidence.figure), ".");
}

function about(evidence) {
  const set = evidence.test_set || {};
  const name = [set.dataset, set.split].filter(Boolean).join(", ");
  return `Corpus BLEU of each model on the test set (${name || "from the report"}; ${set.sentences ?? "?"} ` +
    "sentences), by the source's length in words, with 95% confidence intervals. Choose a bar or a bucket " +
    "to read its sentences.";
}

function link(text, url) {
  const node = element("a", "", text);
  node.href = url;
  return node;
}

function legendItem(model, i) {
  const item = element("li");
  const swatch = element("span", "swatch");
  swatch.style.background = COLOURS[i % COLOURS.length];
  item.append(swatch, model.served ? `${model.name} (served as ${model.served})` : `${model.name} (not served)`);
  return item;
}

// Bars per bucket x model, each with its CI whisker; a bar is a button selecting its bucket.
function chart(evidence, select) {
  const {group, left, top, plot, bottom} = CHART;
  const models = evidence.models.map((model) => model.name);
  const width = left + group * evidence.buckets.length + 8;
  const height = top + plot + bottom;
  const tops = evidence.buckets.flatMap((b) => models.map((m) => (b.bleu[m] ? b.bleu[m].bleu + b.bleu[m].ci : 0)));
  const ceiling = Math.ceil(Math.max(10, ...tops) / 10) * 10;
  const y = (value) => top + plot * (1 - value / ceiling);
  const node = svg("svg", {viewBox: `0 0 ${width} ${height}`, role: "group", "aria-labelledby": "evidence-title"});
  for (let tick = 0; tick <= ceiling; tick += 10) {
    node.append(svg("line", {class: "grid", x1: left, x2: width - 4, y1: y(tick), y2: y(tick)}));
    node.append(svg("text", {class: "tick", x: left - 6, y: y(tick) + 4, "text-anchor": "end"}, String(tick)));
  }
  node.append(svg("text", {class: "tick", x: 12, y: top + plot / 2, "text-anchor": "middle",
                           transform: `rotate(-90 12 ${top + plot / 2})`}, "BLEU"));
  evidence.buckets.forEach((bucket, b) => {
    const x0 = left + group * b;
    models.forEach((model, m) => {
      if (bucket.bleu[model]) node.append(bar(bucket, model, m, models.length, x0, y, select));
    });
    node.append(svg("text", {class: "tick", x: x0 + group / 2, y: top + plot + 18, "text-anchor": "middle"},
                    `${bucket.bucket} words`));
    node.append(svg("text", {class: "tick small", x: x0 + group / 2, y: top + plot + 34, "text-anchor": "middle"},
                    `${bucket.sentences} sentences`));
  });
  return node;
}

function bar(bucket, model, m, count, x0, y, select) {
  const {group} = CHART;
  const {bleu, ci} = bucket.bleu[model];
  const slot = (group - 24) / count;
  const x = x0 + 12 + slot * m;
  const centre = x + slot / 2;
  const label = `${model}, ${bucket.bucket} words: BLEU ${bleu.toFixed(1)} ± ${ci.toFixed(1)}`;
  const node = svg("g", {class: "bar", tabindex: 0, role: "button", "aria-label": label,
                         "data-bucket": bucket.bucket});
  node.append(svg("title", {}, label));
  node.append(svg("rect", {x: x + 2, width: slot - 4, y: y(bleu), height: y(0) - y(bleu),
                           fill: COLOURS[m % COLOURS.length]}));
  const [high, low] = [bleu + ci, Math.max(0, bleu - ci)]; // the whisker: the 95% confidence interval
  node.append(svg("line", {class: "whisker", x1: centre, x2: centre, y1: y(high), y2: y(low)}));
  for (const end of [high, low]) {
    node.append(svg("line", {class: "whisker", x1: centre - 5, x2: centre + 5, y1: y(end), y2: y(end)}));
  }
  node.addEventListener("click", () => select(bucket.bucket));
  node.addEventListener("keydown", (event) => {
    if (event.key !== "Enter" && event.key !== " ") return;
    event.preventDefault();
    select(bucket.bucket);
  });
  return node;
}

// The bucket's sentences as a table: source and reference, each model's translation and chrF, "Try it".
async function showBucket(bucket, models, onTry) {
  for (const node of document.querySelectorAll("#buckets .bucket, #evidence .bar")) {
    const chosen = node.dataset.bucket === bucket;
    if (node.matches(".bucket")) node.setAttribute("aria-pressed", String(chosen));
    else node.classList.toggle("selected", chosen);
  }
  say("evidence-status", `loading the sentences of ${bucket} words…`);
  const mine = ++shown;
  let answer;
  try {
    answer = await getJSON(`/evidence/${encodeURIComponent(bucket)}`);
  } catch (error) {
    if (mine === shown) say("evidence-status", `Could not load bucket ${bucket}: ${error.message}`, true);
    return;
  }
  if (mine !== shown) return;
  say("evidence-status", `${answer.sentences.length} sentences of ${bucket} words`);
  $("bucket-sentences").replaceChildren(sentencesTable(answer, models.map((model) => model.name), onTry));
}

function sentencesTable(answer, names, onTry) {
  const table = element("table", "sentences");
  table.createCaption().textContent =
    `Test sentences of ${answer.bucket} words: each model's stored translation and its chrF`;
  const head = table.createTHead().insertRow();
  for (const title of ["#", "source and reference", ...names, ""]) head.append(element("th", "", title));
  const body = table.createTBody();
  for (const sentence of answer.sentences) body.append(sentenceRow(sentence, names, onTry));
  return table;
}

function sentenceRow(sentence, names, onTry) {
  const tr = element("tr", "sentence");
  tr.append(element("td", "index", String(sentence.index)));
  const texts = element("td");
  texts.append(element("div", "source-text", sentence.source),
               element("div", "reference-text", sentence.reference));
  tr.append(texts);
  for (const name of names) {
    const cell = element("td");
    const translation = sentence.translations[name];
    if (translation) {
      cell.append(element("div", "", translation.text),
                  element("div", "chrf-cell", `chrF ${translation.chrf.toFixed(1)}`));
    }
    tr.append(cell);
  }
  const action = element("td");
  const tryIt = button("Try it", "try", () => onTry(sentence.source, sentence.reference));
  tryIt.setAttribute("aria-label", `Try test sentence ${sentence.index} in the lab`);
  action.append(tryIt);
  tr.append(action);
  return tr;
}

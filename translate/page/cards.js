// One card per model: its translation, chrF against the reference, saliency, the beam's n-best list,
// and where it looked (attention.js).

import {attentionView, contextView} from "./attention.js";
import {element, maximum, pieces, shade} from "./dom.js";

export function card(model) {
  const node = element("section", "model");
  node.dataset.model = model.name;
  node.setAttribute("aria-label", `model ${model.name}`);
  const facts = [model.architecture, `${(model.parameters / 1e6).toFixed(1)} M parameters`];
  if (model.languages.length) facts.push(model.languages.join(" → "));
  if (model.test_bleu !== null) facts.push(`test BLEU ${model.test_bleu}`);
  node.append(element("h3", "", model.name), element("p", "meta", facts.join(" · ")));
  node.append(element("div", "translation"), element("p", "chrf"), element("p", "stats"));
  node.append(part("Saliency", "saliency-part"), part("The beam", "beam-part"));
  node.append(part(model.shows === "attention" ? "Attention" : "The context vector", "detail"));
  return node;
}

// A part of the card the reader may fold away; hidden until an answer has something for it.
function part(title, className) {
  const node = element("details", `part ${className}`);
  node.open = true;
  node.append(element("summary", "", title), element("div", "body"));
  node.hidden = true;
  return node;
}

function fill(node, className, children) {
  const container = node.querySelector(`.${className}`);
  container.hidden = !children.length;
  container.querySelector(".body").replaceChildren(...children);
}

// A model's answer to a single text (`result`, shaped as the contract's /translate answer) in its card.
export function show(node, result) {
  node.querySelector(".translation").textContent = result.translations;
  const chrf = node.querySelector(".chrf");
  chrf.textContent = typeof result.chrf === "number" ? `chrF ${result.chrf.toFixed(1)} against the reference` : "";
  node.querySelector(".stats").textContent =
    `score ${result.scores.toFixed(3)} · ${result.milliseconds} ms (batch of ${result.batch_requests})`;
  fill(node, "saliency-part", "saliency" in result ? saliencyView(result.saliency) : []);
  fill(node, "beam-part", result.nbest ? [nbestList(result.nbest)] : []);
  fill(node, "detail", detail(result));
}

function detail(result) {
  if (result.attention) return [attentionView(result.attention)];
  if (result.context) return [contextView(result.context)];
  return [];
}

// Per sentence, its source pieces shaded by their share of the gradient (null: the model has none).
function saliencyView(sentences) {
  if (!sentences) return [element("p", "caption", "This model gives no gradients (an export): no saliency.")];
  const node = element("div", "saliency");
  for (const sentence of sentences) {
    const top = maximum(sentence.shares) || 1;
    const line = element("p", "pieces");
    line.append(...pieces(sentence.source, "", (span, i) => {
      const share = sentence.shares[i];
      shade(span, (0.85 * share) / top, "200, 80, 0");
      span.dataset.share = share;
      span.title = `${(100 * share).toFixed(1)}% of the gradient`;
      return span;
    }));
    node.append(line);
  }
  const caption = "How much each source subword moved the chosen translation's log-likelihood: " +
    "its share of the gradient at the source embeddings.";
  return [element("p", "caption", caption), node];
}

// The beam's best hypotheses, best first; the first is the one chosen.
function nbestList(entries) {
  const list = element("ol", "nbest");
  entries.forEach((entry, i) => {
    const item = element("li", i === 0 ? "chosen" : "");
    item.append(element("span", "hypothesis", entry.translation),
                element("span", "score", entry.score.toFixed(3)));
    if (i === 0) item.append(element("span", "mark", "chosen"));
    list.append(item);
  });
  const caption = element("p", "caption", `The beam's ${entries.length} best, with their scores ` +
    "(log-probability / length penalty):");
  return wrap(caption, list);
}

function wrap(...children) {
  const node = element("div");
  node.append(...children);
  return node;
}

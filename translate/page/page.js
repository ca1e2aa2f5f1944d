// The page of `translate serve`: one card per model, filled from POST /translate.
"use strict";

const $ = (id) => document.getElementById(id);

function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

function card(model) {
  const node = element("section", "model");
  node.dataset.model = model.name;
  const facts = [model.architecture, `${(model.parameters / 1e6).toFixed(1)} M parameters`];
  if (model.test_bleu !== null) facts.push(`test BLEU ${model.test_bleu}`);
  node.append(element("h2", "", model.name), element("p", "meta", facts.join(" · ")));
  node.append(element("div", "translation"), element("p", "stats"), element("div", "detail"));
  return node;
}

function heatmap(attention) {
  // one sentence: rows are its target subwords, columns its source subwords, the shade the weight
  const table = element("table", "heatmap");
  const head = table.createTHead().insertRow();
  head.append(element("th"));
  for (const piece of attention.source) head.append(element("th", "", piece));
  const body = table.createTBody();
  attention.weights.forEach((row, i) => {
    const tr = body.insertRow();
    tr.append(element("th", "", attention.target[i]));
    row.forEach((weight, j) => {
      const td = tr.insertCell();
      td.style.background = `rgba(31, 90, 180, ${weight})`;
      td.title = `${attention.target[i]} → ${attention.source[j]}: ${weight.toFixed(3)}`;
    });
  });
  return table;
}

function contextStrip(sentences) {
  // one row of pixels per sentence: each of the H numbers of its c, blue above 0, red below
  const node = element("div", "context");
  const vectors = sentences.map((sentence) => sentence.vector);
  const count = (key) => sentences.reduce((sum, sentence) => sum + sentence[key].length, 0);
  node.append(element("p", "caption",
    `No attention to show: the decoder sees the source only as one context vector c of ` +
    `${vectors[0].length} numbers per sentence (${vectors.length} here), the same at each of its ` +
    `${count("target")} steps, for ${count("source")} source subwords.`));
  const canvas = element("canvas");
  canvas.width = vectors[0].length;
  canvas.height = vectors.length;
  const paint = canvas.getContext("2d");
  vectors.forEach((vector, row) => vector.forEach((value, column) => {
    const shade = Math.round(255 * (1 - Math.min(1, Math.abs(value))));
    paint.fillStyle = value >= 0 ? `rgb(${shade}, ${shade}, 255)` : `rgb(255, ${shade}, ${shade})`;
    paint.fillRect(column, row, 1, 1);
  }));
  canvas.title = "the context vector c, one row per sentence";
  node.append(canvas);
  return node;
}

function show(name, result) {
  const node = document.querySelector(`.model[data-model="${CSS.escape(name)}"]`);
  node.querySelector(".translation").textContent = result.translations;
  node.querySelector(".stats").textContent =
    `score ${result.scores.toFixed(3)} · ${result.milliseconds} ms (batch of ${result.batch_requests})`;
  const detail = node.querySelector(".detail");
  detail.replaceChildren();
  // attention and context vectors come sentence by sentence: one heatmap each, one strip for all
  if (result.attention) detail.append(...result.attention.map(heatmap));
  else if (result.context) detail.append(contextStrip(result.context));
}

async function translate(event) {
  event.preventDefault();
  $("error").textContent = "";
  $("status").textContent = "translating…";
  $("submit").disabled = true;
  try {
    const request = {text: $("source").value, model: "all", beam_size: Number($("beam").value),
                     attention: $("attention").checked};
    const response = await fetch("/translate", {
      method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(request),
    });
    const body = await response.json().catch(() => ({}));  // uvicorn's own 503 is plain text
    if (!response.ok) throw new Error(body.error || `${response.status} ${response.statusText}`);
    for (const [name, result] of Object.entries(body.results)) show(name, result);
    $("status").textContent = "done";
  } catch (error) {
    $("error").textContent = error.message;
    $("status").textContent = "";
  } finally {
    $("submit").disabled = false;
  }
}

async function start() {
  const models = (await (await fetch("/models")).json()).models;
  for (const model of models) $("models").append(card(model));
  if (models.length && models[0].languages.length) $("language").textContent = models[0].languages.join(" → ");
  for (const figure of (await (await fetch("/figures")).json()).figures) {
    const link = element("a", "", figure.title);
    link.href = figure.url;
    const item = element("li");
    item.append(link);
    $("figures").append(item);
  }
  $("form").addEventListener("submit", translate);
}

start();

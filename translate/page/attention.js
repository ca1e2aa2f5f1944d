// Where each model looked. Bahdanau and the Transformer: the attention explorer (hover or focus a target
// subword to shade the source subwords it attends to), a heatmap a sentence, and for the Transformer its
// layer x head maps, any of which can drive the rest. The GRU: how its context vector drifts as it reads.

import {button, element, maximum, pieces, shade, svg, unshade} from "./dom.js";

const AVERAGE = "average"; // the selected map when it is each sentence's own `weights`
const HIGHLIGHT = 0.5; // a source piece is highlighted at this fraction of its row's largest weight

// One card's attention, sentence by sentence; one selected map (average, or "layer,head") for them all.
export function attentionView(sentences) {
  const node = element("div", "attention");
  const selection = {map: AVERAGE};
  const views = [];
  const changed = () => views.forEach((view) => view.update());
  sentences.forEach((sentence) => views.push(sentenceView(sentence, selection, changed)));
  node.append(
    element("p", "caption", "Hover over or focus a target subword: the source subwords it attends to are shaded."),
    ...views.map((view) => view.node),
  );
  return node;
}

function sentenceView(sentence, selection, changed) {
  const node = element("div", "sentence");
  const weights = () => selectedMap(sentence, selection.map);
  const source = row("source", pieces(sentence.source));
  const target = row("target", pieces(sentence.target, "", (span, i) => explorable(span, i)));
  const table = element("div", "scroll");
  const grid = sentence.heads ? headsGrid(sentence, selection, changed) : null;
  let active = null; // the target piece shown, if any

  function explorable(span, i) {
    span.tabIndex = 0;
    const show = () => {
      active = i;
      highlight(source, target, table, weights(), i);
    };
    const hide = () => {
      active = null;
      highlight(source, target, table, weights(), null);
    };
    span.addEventListener("mouseenter", show);
    span.addEventListener("focus", show);
    span.addEventListener("mouseleave", hide);
    span.addEventListener("blur", hide);
    return span;
  }

  function update() {
    table.replaceChildren(heatmap(sentence, weights(), sentence.heads ? mapName(selection.map) : ""));
    if (grid) markPressed(grid, selection.map);
    highlight(source, target, table, weights(), active);
  }

  node.append(source, target, table);
  if (grid) node.append(grid);
  update();
  return {node, update};
}

function row(className, spans) {
  const node = element("div", className);
  node.append(element("span", "label", className), ...spans);
  return node;
}

function selectedMap(sentence, map) {
  if (map === AVERAGE || !sentence.heads) return sentence.weights;
  const [layer, head] = map.split(",").map(Number);
  return sentence.heads[layer][head];
}

function mapName(map) {
  if (map === AVERAGE) return "the average of the last layer's heads";
  const [layer, head] = map.split(",").map(Number);
  return `layer ${layer + 1}, head ${head + 1}`;
}

// Shade the source pieces by target piece i's weights (i null: clear), and mark its heatmap row.
function highlight(source, target, table, weights, i) {
  const row = i === null ? null : weights[i];
  const top = row ? maximum(row) || 1 : 1;
  source.querySelectorAll(".piece").forEach((span, j) => {
    const weight = row ? row[j] ?? 0 : 0;
    if (row) shade(span, (0.85 * weight) / top);
    else unshade(span);
    span.classList.toggle("highlight", Boolean(row) && weight > 0 && weight >= HIGHLIGHT * top);
    span.title = row ? `weight ${weight.toFixed(3)}` : "";
  });
  target.querySelectorAll(".piece").forEach((span, k) => span.classList.toggle("active", k === i));
  table.querySelectorAll("tbody tr").forEach((tr, k) => tr.classList.toggle("active", k === i));
}

// One sentence's map (`name`d, if the model has several): rows its target subwords, columns its source
// subwords, the shade the weight.
function heatmap(sentence, weights, name) {
  const table = element("table", "heatmap");
  table.createCaption().textContent = `rows: target, columns: source${name ? `; ${name}` : ""}`;
  const head = table.createTHead().insertRow();
  head.append(element("th"));
  for (const piece of sentence.source) head.append(element("th", "", piece));
  const body = table.createTBody();
  weights.forEach((values, i) => {
    const tr = body.insertRow();
    tr.append(element("th", "", sentence.target[i]));
    values.forEach((weight, j) => {
      const td = tr.insertCell();
      td.style.background = `rgba(31, 90, 180, ${weight})`;
      td.title = `${sentence.target[i]} → ${sentence.source[j]}: ${weight.toFixed(3)}`;
    });
  });
  return table;
}

// The Transformer's maps: the average, then a grid of layers (rows) x heads (columns), each a button.
function headsGrid(sentence, selection, changed) {
  const node = element("div", "heads scroll");
  const layers = sentence.heads.length;
  const heads = sentence.heads[0].length;
  const choose = (map) => () => {
    selection.map = map;
    changed();
  };
  node.append(element("p", "caption", `Cross-attention: ${layers} layers × ${heads} heads. Choose a map:`));
  node.append(mapButton(mapName(AVERAGE), sentence.weights, AVERAGE, choose(AVERAGE)));
  const grid = element("div", "grid");
  grid.style.gridTemplateColumns = `auto repeat(${heads}, auto)`;
  grid.append(element("span"));
  for (let h = 0; h < heads; h++) grid.append(element("span", "axis", `head ${h + 1}`));
  sentence.heads.forEach((maps, l) => {
    grid.append(element("span", "axis", `layer ${l + 1}`));
    maps.forEach((weights, h) => {
      const map = `${l},${h}`;
      grid.append(mapButton(mapName(map), weights, map, choose(map)));
    });
  });
  node.append(grid);
  return node;
}

function mapButton(label, weights, map, onClick) {
  const node = button("", "map", onClick);
  node.dataset.map = map;
  node.setAttribute("aria-label", `show the map of ${label}`);
  node.title = label;
  node.append(smallMap(weights));
  if (map === AVERAGE) node.append(element("span", "", "average"));
  return node;
}

function markPressed(grid, map) {
  for (const node of grid.querySelectorAll("button.map")) {
    node.setAttribute("aria-pressed", String(node.dataset.map === map));
  }
}

// A map as a canvas of one pixel a weight (drawn larger by CSS), shaded against the map's largest weight.
function smallMap(weights) {
  const canvas = element("canvas");
  canvas.width = weights[0]?.length || 1;
  canvas.height = weights.length || 1;
  const top = maximum(weights.map(maximum)) || 1;
  const paint = canvas.getContext("2d");
  weights.forEach((values, i) => values.forEach((weight, j) => {
    paint.fillStyle = `rgba(31, 90, 180, ${weight / top})`;
    paint.fillRect(j, i, 1, 1);
  }));
  return canvas;
}

// The GRU: no attention, one context vector c a sentence; a chart of its drift per sentence.
export function contextView(sentences) {
  const node = element("div", "context");
  const count = (key) => sentences.reduce((sum, sentence) => sum + sentence[key].length, 0);
  node.append(element("p", "caption",
    `No attention to show: the decoder sees the source only as one context vector c of ` +
    `${sentences[0].vector.length} numbers per sentence (${sentences.length} here), the same at each of its ` +
    `${count("target")} steps, for ${count("source")} source subwords.`));
  const charts = sentences.filter((sentence) => sentence.drift).map(driftChart);
  if (!charts.length) return node;
  for (const chart of charts) {
    const wrap = element("div", "scroll");
    wrap.append(chart);
    node.append(wrap);
  }
  node.append(element("p", "caption",
    "Each point: how far c of the source read up to that subword is from the final c (1 − cos); " +
    "a line that stays high until the end means the last words decided c."));
  return node;
}

const CHART = {step: 34, left: 42, top: 12, plot: 110, bottom: 72};

function driftChart(sentence) {
  const {step, left, top, plot, bottom} = CHART;
  const drift = sentence.drift;
  const width = left + step * drift.length + 8;
  const height = top + plot + bottom;
  const ceiling = Math.max(0.1, Math.ceil(maximum(drift) * 10) / 10);
  const x = (k) => left + step * (k + 0.5);
  const y = (value) => top + plot * (1 - value / ceiling);
  const described = drift.map((value, k) => `${sentence.source[k]} ${value.toFixed(2)}`).join(", ");
  const chart = svg("svg", {class: "drift", width, height, viewBox: `0 0 ${width} ${height}`, role: "img",
                            "aria-label": `Distance of each prefix's c from the final c: ${described}`});
  for (const tick of [0, ceiling / 2, ceiling]) {
    chart.append(svg("line", {class: "grid", x1: left, x2: width - 4, y1: y(tick), y2: y(tick)}));
    chart.append(svg("text", {class: "tick", x: left - 6, y: y(tick) + 4, "text-anchor": "end"}, tick.toFixed(2)));
  }
  chart.append(svg("text", {class: "tick", x: 10, y: top + plot / 2, transform: `rotate(-90 10 ${top + plot / 2})`,
                            "text-anchor": "middle"}, "1 − cos"));
  chart.append(svg("polyline", {class: "line", points: drift.map((value, k) => `${x(k)},${y(value)}`).join(" ")}));
  drift.forEach((value, k) => {
    const dot = svg("circle", {class: "dot", cx: x(k), cy: y(value), r: 4});
    dot.append(svg("title", {}, `${sentence.source[k]}: ${value.toFixed(3)}`));
    const base = top + plot + 10;
    chart.append(dot, svg("text", {class: "tick", x: x(k), y: base, "text-anchor": "end",
                                   transform: `rotate(-60 ${x(k)} ${base})`}, sentence.source[k]));
  });
  return chart;
}

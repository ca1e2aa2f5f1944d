// Small helpers shared by the page's modules: building elements, fetching JSON, shading.

export const $ = (id) => document.getElementById(id);

export function element(tag, className, text) {
  const node = document.createElement(tag);
  if (className) node.className = className;
  if (text !== undefined) node.textContent = text;
  return node;
}

export function svg(tag, attributes = {}, text) {
  const node = document.createElementNS("http://www.w3.org/2000/svg", tag);
  for (const [name, value] of Object.entries(attributes)) node.setAttribute(name, value);
  if (text !== undefined) node.textContent = text;
  return node;
}

export function button(text, className, onClick) {
  const node = element("button", className, text);
  node.type = "button";
  node.addEventListener("click", onClick);
  return node;
}

// The JSON body of a successful answer; otherwise an Error with the server's message ({"error": ...})
// or, where the body is not JSON (uvicorn's own 503 is plain text), the status line.
export async function getJSON(url, options) {
  const response = await fetch(url, options);
  const body = await response.json().catch(() => null);
  if (!response.ok) throw new Error(body?.error || `${response.status} ${response.statusText}`);
  return body;
}

// Shade a node's background by `strength` (0..1) of a colour given as "r, g, b"; white text on dark.
export function shade(node, strength, rgb = "31, 90, 180") {
  node.style.backgroundColor = `rgba(${rgb}, ${strength.toFixed(3)})`;
  node.style.color = strength > 0.55 ? "#fff" : "";
}

export function unshade(node) {
  node.style.backgroundColor = "";
  node.style.color = "";
}

// One span per subword piece; `className` adds to "piece".
export function pieces(list, className = "", extra = (span) => span) {
  return list.map((piece, i) => extra(element("span", `piece ${className}`.trim(), piece), i));
}

// A status line's message; `failed` shows it as an error.
export function say(id, message, failed = false) {
  $(id).textContent = message;
  $(id).classList.toggle("failed", failed);
}

export const maximum = (values) => values.reduce((top, value) => Math.max(top, value), 0);

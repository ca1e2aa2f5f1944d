// Grow the input: a run of consecutive test sentences (GET /examples) added one at a time to the
// source, and their references to the reference; each addition translates the whole text again.

import {$, element, getJSON, say} from "./dom.js";

const state = {example: null, count: 0}; // the chosen example, and how many of its sentences are in

// Fill the #example select; `translate()` asks every model for the current text.
export async function setupGrow(translate) {
  let examples;
  try {
    examples = (await getJSON("/examples")).examples;
  } catch (error) {
    say("examples-status", `No test examples to grow: ${error.message}`, true);
    $("example").disabled = true;
    return;
  }
  for (const [i, example] of examples.entries()) {
    const option = element("option", "", `${example.index}: ${preview(example.sources[0])}`);
    option.value = String(i);
    $("example").append(option);
  }
  $("example").addEventListener("change", () => choose(examples[$("example").value], translate));
  $("grow").addEventListener("click", () => grow(translate));
}

// Leave the example (the text came from elsewhere): #grow is off until one is chosen again.
export function forgetExample() {
  $("example").value = "";
  state.example = null;
  state.count = 0;
  update();
}

function preview(sentence) {
  return sentence.length > 60 ? `${sentence.slice(0, 57)}…` : sentence;
}

function choose(example, translate) {
  state.example = example || null;
  state.count = 0;
  if (!state.example) return update();
  $("source").value = "";
  $("reference").value = "";
  $("whole").checked = true; // the models read the grown text as one input: the context vector has to hold it all
  grow(translate);
}

function grow(translate) {
  const {example, count} = state;
  if (!example || count >= example.sources.length) return;
  append("source", example.sources[count]);
  append("reference", example.references[count]);
  state.count += 1;
  update();
  translate();
}

// Sentences of a run are joined with a space, as the joined test sets join them.
function append(id, sentence) {
  const before = $(id).value.trimEnd();
  $(id).value = before ? `${before} ${sentence}` : sentence;
}

function update() {
  const {example, count} = state;
  $("grow").disabled = !example || count >= example.sources.length;
  $("grow-count").textContent = example ? `${count} of ${example.sources.length} sentences` : "";
}

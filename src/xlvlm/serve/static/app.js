// xlvlm serve: the page. Everything the run folder says (words, prompts, captions, sample ids)
// is user data: it goes into the page only as textContent or attribute values set through the
// DOM, never as HTML. No library, no request to anywhere but this server.
"use strict";

const $ = (id) => document.getElementById(id);

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key === "class") node.className = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) if (child != null) node.append(child);
  return node;
}

function fmt(value) {
  if (value === null || value === undefined) return "-";
  if (typeof value === "number") return Number.isInteger(value) ? String(value) : value.toFixed(3);
  if (Array.isArray(value)) return value.join(", ");
  return String(value);
}

function showMessage(text) {
  const box = $("message");
  box.textContent = text;
  box.hidden = !text;
}

let pending = 0;
function setBusy(delta) {
  pending += delta;
  $("busy").hidden = pending === 0;
  document.body.setAttribute("aria-busy", pending > 0 ? "true" : "false");
  for (const button of document.querySelectorAll("#play-on button")) button.disabled = pending > 0;
}

async function api(path, options = {}, busy = false) {
  if (busy) setBusy(1);
  try {
    const response = await fetch(path, options);
    const type = response.headers.get("content-type") || "";
    const body = type.includes("application/json") ? await response.json() : {error: await response.text()};
    if (!response.ok) throw new Error(body.error || `HTTP ${response.status}`);
    showMessage("");
    return body;
  } catch (error) {
    showMessage(String(error.message || error));
    throw error;
  } finally {
    if (busy) setBusy(-1);
  }
}

const post = (data) => ({method: "POST", headers: {"Content-Type": "application/json"}, body: JSON.stringify(data)});
const query = (params) => new URLSearchParams(params).toString();

function figure(fig) {
  return el("figure", {}, el("img", {src: "/files/" + fig.path.split("/").map(encodeURIComponent).join("/"), alt: fig.path}),
            el("figcaption", {text: fig.caption}));
}

// A table whose columns sort on a click (numbers as numbers, "-" last).
function sortableTable(columns, rows, render = fmt) {
  const table = el("table", {class: "sortable"});
  const body = el("tbody");
  let order = {column: null, descending: false};
  const fill = () => {
    body.replaceChildren(...rows.map((row) => el("tr", {}, ...columns.map((c) => el("td", {text: render(row[c], c)})))));
  };
  const head = el("tr", {}, ...columns.map((column) => el("th", {
    class: "sortable", text: column, title: "sort", onclick: () => {
      order = {column, descending: order.column === column ? !order.descending : false};
      const key = (row) => row[column];
      rows = [...rows].sort((a, b) => {
        const x = key(a), y = key(b);
        if (x === null || x === undefined) return 1;
        if (y === null || y === undefined) return -1;
        const result = typeof x === "number" && typeof y === "number" ? x - y : String(x).localeCompare(String(y));
        return order.descending ? -result : result;
      });
      fill();
    }})));
  table.append(el("thead", {}, head), body);
  fill();
  return table;
}

// ---- concepts ------------------------------------------------------------------------------------
function histogramSvg(data) {
  const ns = "http://www.w3.org/2000/svg";
  const width = 260, height = 70, max = Math.max(1, ...data.counts);
  const svg = document.createElementNS(ns, "svg");
  svg.setAttribute("class", "histogram");
  svg.setAttribute("width", width);
  svg.setAttribute("height", height + 14);
  const bar = width / data.counts.length;
  data.counts.forEach((count, i) => {
    const rect = document.createElementNS(ns, "rect");
    const h = (count / max) * height;
    rect.setAttribute("x", i * bar);
    rect.setAttribute("y", height - h);
    rect.setAttribute("width", Math.max(1, bar - 1));
    rect.setAttribute("height", h);
    const title = document.createElementNS(ns, "title");
    title.textContent = `${count} samples`;
    rect.append(title);
    svg.append(rect);
  });
  for (const [x, anchor, value] of [[0, "start", data.low], [width, "end", data.high]]) {
    const label = document.createElementNS(ns, "text");
    label.setAttribute("x", x);
    label.setAttribute("y", height + 12);
    label.setAttribute("text-anchor", anchor);
    label.textContent = fmt(value);
    svg.append(label);
  }
  return svg;
}

function conceptCard(dictionary, concept) {
  const samples = el("div", {class: "samples"}, ...concept.samples.slice(0, 8).map((s) => el("div", {class: "sample"},
    s.has_image ? el("img", {src: "/api/concepts/image?" + query({folder: dictionary.folder, concept: concept.concept, rank: s.rank}),
                             alt: s.id || "sample", class: "mas"}) : null,
    el("span", {text: `Q: ${s.question ?? ""}`}), el("br"), el("span", {text: `A: ${s.answer ?? "-"}`}))));
  const histogram = el("div", {class: "histogram-box"});
  const button = el("button", {type: "button", text: "activation histogram", onclick: async () => {
    button.disabled = true;
    const data = await api("/api/concepts/histogram?" + query({folder: dictionary.folder, concept: concept.concept}));
    histogram.replaceChildren(histogramSvg(data));
  }});
  return el("div", {class: "concept", "data-words": concept.words.join(" ").toLowerCase()},
    el("h3", {text: `concept ${concept.concept}`}), el("div", {class: "words", text: concept.words.join(", ") || "(no words)"}),
    samples, button, histogram);
}

async function loadConcepts() {
  const tab = $("tab-concepts");
  const dictionaries = await api("/api/concepts");
  if (!dictionaries.length) tab.append(el("p", {class: "muted", text: "No concept dictionaries in this run."}));
  for (const d of dictionaries) {
    const grid = el("div", {class: "concept-grid"}, ...d.concepts.map((c) => conceptCard(d, c)));
    const search = el("input", {type: "search", placeholder: "search concepts by word", "aria-label": "search concepts"});
    search.addEventListener("input", () => {
      const word = search.value.trim().toLowerCase();
      for (const card of grid.children) card.hidden = word !== "" && !card.dataset.words.includes(word);
    });
    const s = d.settings;
    tab.append(el("h2", {text: `Concepts: ${d.folder}`}),
      el("p", {text: `${s.method} dictionary of ${s.n_concepts} concepts on layer ${s.layer} of ${s.model ?? "the model"}.`}),
      sortableTable(["metric", "value"], Object.entries(d.metrics).map(([metric, value]) => ({metric, value}))),
      search, grid, ...d.figures.map(figure));
  }
}

// ---- shift, sweeps, predictions ----------------------------------------------------------------------
async function loadShift() {
  const tab = $("tab-shift");
  const analyses = await api("/api/shift");
  if (!analyses.length) tab.append(el("p", {class: "muted", text: "No shift analysis in this run."}));
  for (const a of analyses) {
    const columns = ["concept", "matched", "words_original", "words_shifted", "words_finetuned", "cos_original", "cos_shifted"];
    tab.append(el("h2", {text: `Fine-tuning shift: ${a.folder}`}),
      el("p", {text: `Shifted concepts closer to their fine-tuned match than the original ones for ` +
                     `${Math.round((a.summary.share_closer_by_cosine ?? 0) * 100)}% of concepts.`}),
      sortableTable(columns, a.concepts), ...a.figures.map(figure));
  }
}

async function loadSweeps() {
  const tab = $("tab-sweeps");
  const sweeps = await api("/api/sweeps");
  if (!sweeps.length) tab.append(el("p", {class: "muted", text: "No steering sweep in this run."}));
  for (const s of sweeps) {
    const title = s.source ? `Steering sweep ${s.source} → ${s.target}: ${s.folder}` : `Steering sweep: ${s.folder}`;
    tab.append(el("h2", {text: title}), sortableTable(s.columns, s.rows), ...s.figures.map(figure));
  }
}

// ---- the other stages: learned steering, hallucination, calibration, evaluation -------------------------
const STAGE_TABS = {learned: "learned steering", hallucination: "hallucination steering",
                    calibration: "calibration", evaluation: "evaluation or table"};

async function loadStageTab(tab) {
  const section = $(`tab-${tab}`);
  const sections = await api(`/api/stages/${tab}`);
  if (!sections.length) section.append(el("p", {class: "muted", text: `No ${STAGE_TABS[tab]} stage in this run.`}));
  for (const s of sections) {
    if (s.error) {
      section.append(el("p", {class: "message stage-error", text: s.error}));
      continue;
    }
    section.append(el("h2", {text: `${s.title}: ${s.folder}`}), el("p", {text: s.about}));
    for (const t of s.tables) {
      if (t.caption) section.append(el("h4", {text: t.caption}));
      section.append(sortableTable(t.columns, t.rows));
    }
    section.append(...s.figures.map(figure));
  }
}

// ---- patching: pick a pair, see its maps -------------------------------------------------------------
function patchingPair(result, pair) {
  const rows = result.sites.map((site, s) => Object.fromEntries([["site", site],
    ...pair.labels.map((label, c) => [label, (pair.recovery[s] ?? [])[c]])]));
  return el("div", {},
    el("p", {text: `${pair.prompt ?? ""} (${pair.answers.join(" vs ")}): clean ${fmt(pair.clean)}, corrupted ${fmt(pair.corrupted)}`}),
    sortableTable(["site", ...pair.labels], rows), ...pair.figures.map(figure));
}

async function loadPatching() {
  const tab = $("tab-patching");
  const results = await api("/api/patching");
  if (!results.length) tab.append(el("p", {class: "muted", text: "No patching result in this run."}));
  for (const result of results) {
    const shown = el("div");
    const choice = el("select", {"aria-label": "pair"}, ...result.pairs.map((pair, i) => el("option", {value: i, text: pair.id})));
    choice.addEventListener("change", () => shown.replaceChildren(patchingPair(result, result.pairs[choice.value])));
    tab.append(el("h2", {text: `Activation patching (${result.method}, ${result.metric}, ${result.positions}): ${result.folder}`}),
      ...result.figures.map(figure), el("label", {text: "Pair "}, choice), shown);
    if (result.pairs.length) shown.append(patchingPair(result, result.pairs[0]));
  }
}

async function loadPredictionFiles() {
  const files = await api("/api/predictions/files");
  if (!files.length) $("prediction-table").replaceChildren(el("p", {class: "muted", text: "No predictions files in this run."}));
  const select = $("prediction-file");
  select.replaceChildren(...files.map((f) => el("option", {value: f, text: f})));
  select.addEventListener("change", loadPredictions);
  if (files.length) loadPredictions();
}

async function loadPredictions() {
  const file = $("prediction-file").value;
  const data = await api("/api/predictions?" + query({file}));
  const note = data.rows.length >= data.limit ? ` (first ${data.limit} rows)` : "";
  $("prediction-table").replaceChildren(el("p", {text: `${data.file}: ${data.rows.length} rows${note}`}),
    sortableTable(["id", "prompt", "answer", "prediction"], data.rows));
}

// ---- play ----------------------------------------------------------------------------------------
const play = {upload: null, samples: []};

function imageChoice() {
  if (play.upload) return {upload: play.upload};
  const sample = play.samples.find((s) => s.id === $("play-sample").value);
  return sample ? {store: sample.store, id: sample.id} : {};
}

function showChosenImage(src) {
  const image = $("play-image");
  image.src = src;
  image.hidden = false;
}

function topTable(steps) {
  const first = steps && steps.length ? steps[0] : [];
  return [el("tr", {}, el("th", {text: "token"}), el("th", {text: "probability"})),
          ...first.map((t) => el("tr", {}, el("td", {text: t.token}), el("td", {text: fmt(t.prob)})))];
}

async function answer() {
  const result = await api("/api/play/answer", post({image: imageChoice(), prompt: $("play-prompt").value}), true);
  $("answer-text").textContent = result.answer;
  $("answer-topk").replaceChildren(...topTable(result.top_k));
  const concepts = result.concepts;
  $("answer-dictionary").textContent = concepts ? `${concepts.dictionary} (layer ${concepts.layer}, ${concepts.selector})`
                                                : "(no concept dictionary in this run reads new inputs)";
  $("answer-concepts").replaceChildren(...(concepts ? concepts.top : []).map((c) =>
    el("li", {text: `concept ${c.concept}: ${fmt(c.activation)} (max in run ${fmt(c.max_in_run)}) ${c.words.join(", ")}`})));
}

async function steer() {
  const request = {image: imageChoice(), prompt: $("play-prompt").value, vector: $("steer-vector").value,
                   layer: $("steer-layer").value || null, positions: $("steer-positions").value,
                   alpha: Number($("steer-alpha").value)};
  const result = await api("/api/play/steer", post(request), true);
  $("steer-unsteered").textContent = result.unsteered.answer;
  $("steer-steered").textContent = result.steered.answer;
}

function vectorLabel(v) {
  if (v.kind === "computed") return `${v.method}: ${v.name}`;
  const alpha = v.alpha === null || v.alpha === undefined ? "" : ` (calibrated at alpha ${fmt(v.alpha)})`;
  return `${v.steering || "fixed"}: ${v.name}${alpha}`;
}

// A calibrated steering's alpha is the slider's default (the range widens to hold it).
function setAlpha(value) {
  const alpha = $("steer-alpha");
  const bound = Math.ceil(Math.abs(value));
  if (bound > Number(alpha.max)) { alpha.max = String(bound); alpha.min = String(-bound); }
  alpha.value = String(value);
  $("steer-alpha-value").textContent = alpha.value;
}

// Per-sample steering holds vectors for its own samples only: say so when another one is chosen.
function checkPerSample() {
  const vector = (play.vectors || []).find((v) => v.name === $("steer-vector").value);
  const ids = vector && vector.steering === "per-sample" ? vector.ids || [] : null;
  const fits = !ids || (!play.upload && ids.includes($("play-sample").value));
  $("steer-note").textContent = fits ? "" : `This per-sample steering holds vectors for its own ${ids.length} ` +
    `samples only (e.g. ${ids.slice(0, 3).join(", ")}): pick one of them in a store that has them.`;
  $("steer-note").hidden = fits;
}

function fillVectors(vectors, chosen) {
  play.vectors = vectors;
  $("steer-vector").replaceChildren(...vectors.map((v) => el("option", {value: v.name, text: vectorLabel(v)})));
  if (chosen) $("steer-vector").value = chosen;
  const layers = () => {
    const vector = vectors.find((v) => v.name === $("steer-vector").value);
    $("steer-layer").replaceChildren(el("option", {value: "", text: "all its layers"}),
      ...(vector ? vector.layers : []).map((l) => el("option", {value: l, text: l})));
    if (vector && vector.alpha !== null && vector.alpha !== undefined) setAlpha(vector.alpha);
    checkPerSample();
  };
  $("steer-vector").onchange = layers;
  layers();
}

async function loadSamples() {
  const store = $("play-store").value;
  const samples = await api("/api/play/samples?" + query({store}));
  if (store !== $("play-store").value) return;  // another store was chosen meanwhile
  play.samples = samples;
  $("play-sample").replaceChildren(...samples.map((s) => el("option", {value: s.id,
    text: `${s.id}: ${s.prompt ?? ""}${(s.reference ?? s.answer) ? " → " + (s.reference ?? s.answer) : ""}`})));
  $("play-sample").dataset.store = store;  // whose samples the list shows
  pickSample();
}

function pickSample() {
  play.upload = null;
  const sample = play.samples.find((s) => s.id === $("play-sample").value);
  if (!sample) return;
  $("play-prompt").value = sample.prompt ?? "";
  if (sample.image_ok) showChosenImage("/api/play/sample.png?" + query({store: sample.store, id: sample.id}));
  else $("play-image").hidden = true;
  if (play.vectors) checkPerSample();
}

async function loadPlay(enabled) {
  $("play-off").hidden = enabled;
  $("play-on").hidden = !enabled;
  if (!enabled) return;
  const options = await api("/api/play/options");
  $("play-model").textContent = `model ${options.model} (${options.family}, ${options.num_layers} layers)`;
  const storeOptions = () => options.stores.map((s) => el("option", {value: s.name, text: `${s.name} (${s.n_samples})`}));
  for (const id of ["play-store", "compute-source-store", "compute-target-store"]) $(id).replaceChildren(...storeOptions());
  $("compute-method").replaceChildren(...options.methods.map((m) => el("option", {value: m, text: m})));
  $("play-store").addEventListener("change", loadSamples);
  $("play-sample").addEventListener("change", pickSample);
  if (options.stores.length) await loadSamples();
  fillVectors(options.vectors);
  $("steer-positions").replaceChildren(...options.positions.map((p) => el("option", {value: p, text: p})));
  const alpha = $("steer-alpha");
  alpha.addEventListener("input", () => { $("steer-alpha-value").textContent = alpha.value; });
  alpha.addEventListener("change", steer);  // on release: one model call per chosen alpha
  $("play-answer").addEventListener("click", answer);
  $("play-upload").addEventListener("change", async (event) => {
    const file = event.target.files[0];
    if (!file) return;
    const result = await api("/api/upload", {method: "POST", body: file}, true);
    play.upload = result.token;
    showChosenImage(`/api/upload/${encodeURIComponent(result.token)}.png`);
  });
  $("compute-vector").addEventListener("click", async () => {
    const set = (side) => ({store: $(`compute-${side}-store`).value, answer: $(`compute-${side}-answer`).value || null});
    const vector = await api("/api/play/vector", post({source: set("source"), target: set("target"),
                                                       method: $("compute-method").value}), true);
    const refreshed = await api("/api/play/options");
    fillVectors(refreshed.vectors, vector.name);
  });
}

// ---- tabs ----------------------------------------------------------------------------------------
function showTab(name) {
  for (const button of document.querySelectorAll("#tabs button")) button.classList.toggle("active", button.dataset.tab === name);
  for (const tab of document.querySelectorAll(".tab")) tab.hidden = tab.id !== `tab-${name}`;
}

async function start() {
  for (const button of document.querySelectorAll("#tabs button")) button.addEventListener("click", () => showTab(button.dataset.tab));
  const run = await api("/api/run");
  $("run-name").textContent = run.name;
  await Promise.allSettled([loadConcepts(), loadShift(), loadSweeps(), loadPatching(), loadPredictionFiles(),
                            loadPlay(run.play), ...Object.keys(STAGE_TABS).map(loadStageTab)]);
  document.body.dataset.ready = "true";
}

document.addEventListener("DOMContentLoaded", start);

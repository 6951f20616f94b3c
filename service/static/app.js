// The artists' page: send one image to /v1/detect and show the verdict with its evidence.
"use strict";

const $ = (id) => document.getElementById(id);
const BANDS = {
  "human": "Looks like human work to this model.",
  "uncertain": "The score is above the range the model calls human but below its flag threshold: not " +
    "enough evidence either way. Treat this as no answer, not as an accusation.",
  "ai-mimicry": "The model says this is likely AI-generated mimicry.",
};

function showStatus(text, isError = false) {
  $("status").textContent = text;
  $("status").classList.toggle("error", isError);
}

function showVerdict(v) {
  const pct = (x) => (100 * x).toFixed(1) + "%";
  const verdict = $("verdict");
  verdict.textContent = v.label === "ai-mimicry" ? "Likely AI mimicry" : v.label === "human" ? "Likely human" : "Uncertain";
  verdict.className = v.label;
  verdict.dataset.label = v.label;
  // A calibrated score, read against the threshold: "89% probability" beside "uncertain" read as a contradiction.
  $("score").textContent = `${pct(v.score)} (the model flags ${pct(v.threshold)} and above)`;
  const declared = v.evidence && v.evidence.label_reason === "declared-ai-by-metadata";
  $("band").textContent = declared ? `${v.label}: the file's own metadata says a generative model made it.`
    : `${v.label}: ${BANDS[v.label] || ""}`;
  $("threshold").textContent = pct(v.threshold);
  $("model").textContent = `${v.model} ${v.model_version}`;
  $("trained-on").textContent = (v.evidence && v.evidence.model_trained_on) || "";
  $("evidence").textContent = JSON.stringify(v.evidence || {}, null, 2);
  showProvenance((v.evidence && v.evidence.provenance) || []);
  showArtists((v.evidence && v.evidence.artists) || []);
  showAttributedTo(v.evidence || {});
  showCopy((v.evidence && v.evidence.copy_of) || null);
  const reason = v.evidence && v.evidence.label_reason;
  $("label-reason").textContent = reason === "declared-ai-by-metadata"
    ? `Flagged because the file declares itself AI-made; the model alone said "${v.evidence.model_label}".`
    : "";
  $("meter-bar").style.width = pct(v.score);
  $("meter-threshold").style.left = pct(v.threshold);
  $("result").hidden = false;
}

function showArtists(matches) {
  const list = $("artists");
  list.replaceChildren();
  for (const m of matches) {
    const item = document.createElement("li");
    item.className = m.passes ? "match" : "";
    item.dataset.artist = m.artist;
    const near = m.nearest_works.map((w) => w.similarity.toFixed(2)).join(", ");
    item.textContent = `${m.artist}: similarity ${m.similarity.toFixed(3)}${m.passes ? " (match)" : ""}; ` +
      `nearest enrolled works ${near}`;
    list.appendChild(item);
  }
  $("artists-box").hidden = matches.length === 0;
}

// The abstain is said in words: no enrolled artist is claimed when none reaches the threshold.
function showAttributedTo(evidence) {
  const el = $("attributed-to");
  if (!("attributed_to" in evidence) || !evidence.artists || evidence.artists.length === 0) {
    el.hidden = true;
    return;
  }
  el.textContent = evidence.attributed_to === null
    ? "Attributed to: no enrolled artist (none is close enough to claim)."
    : `Attributed to: ${evidence.attributed_to}.`;
  el.hidden = false;
}

// A copy of an enrolled work is said apart from the style scores: it is a claim about this very picture,
// independent of the style threshold. Callers who may not see enrolled files get the artist only.
function showCopy(copy) {
  const line = $("copy-of");
  if (!copy) {
    line.hidden = true;
    line.textContent = "";
    return;
  }
  const work = copy.source ? `enrolled work "${copy.source}"` : "an enrolled work";
  line.textContent = `This image is a copy of ${work} by ${copy.artist} ` +
    `(picture distance ${copy.distance.toFixed(3)}; 0 is the same picture).`;
  line.dataset.artist = copy.artist;
  line.hidden = false;
}

function showProvenance(signals) {
  const list = $("provenance");
  list.replaceChildren();
  for (const s of signals) {
    const item = document.createElement("li");
    item.className = s.declares_ai ? "declares-ai" : "";
    const trust = s.verified ? `signed (${s.signature})` : s.signature ? `signature ${s.signature}` : "unsigned";
    item.textContent = `${s.source}: ${s.signal} = ${s.value}` + (s.generator ? ` [${s.generator}]` : "") + ` (${trust})`;
    list.appendChild(item);
  }
  $("provenance-box").hidden = signals.length === 0;
}

let lastFile = null;
// Each upload gets a number; a reply (verdict or heatmap) for an upload other than the latest is dropped,
// so a slow answer for an earlier file never shows under a later one.
let uploadNumber = 0;

// The reply's JSON, or, when the body is not JSON (a proxy's or the HTTP server's own plain-text 503, 413
// or 502), an error object made from the status line, so the page says what happened.
async function readReply(response) {
  const type = response.headers.get("content-type") || "";
  if (type.includes("application/json")) {
    try { return await response.json(); } catch (err) { /* fall through: a broken body */ }
  }
  const code = response.status === 503 ? "overloaded" : "http_" + response.status;
  const message = response.status === 503 ? "the server is busy; try again shortly"
    : `the server answered ${response.status} ${response.statusText || ""}`.trim();
  return response.ok ? null : { error: { code, message } };
}

function authHeaders() {
  const key = $("api-key").value.trim();
  return key ? { "X-API-Key": key } : {};
}

async function showHeatmap() {
  if (!lastFile) return;
  const mine = uploadNumber;
  const form = new FormData();
  form.append("file", lastFile, lastFile.name);
  $("explain-btn").disabled = true;
  showStatus("Computing the heatmap ...");
  try {
    const response = await fetch("/v1/explain", { method: "POST", body: form, headers: authHeaders() });
    const body = await readReply(response);
    if (mine !== uploadNumber) return;  // another file was chosen meanwhile
    if (!response.ok || !body) {
      const e = body && body.error ? body.error : { code: "http_" + response.status, message: "no heatmap in the reply" };
      showStatus(`No heatmap (${e.code}): ${e.message}`, true);
      return;
    }
    $("heatmap").src = body.overlay_png;
    const v = body.verdict;
    const colour = { "ai-mimicry": "Red", "human": "Blue", "uncertain": "Amber" }[v.label] || "Colour";
    const what = { "ai-mimicry": "the evidence for AI mimicry", "human": "the evidence for human work",
                   "uncertain": "the evidence either way" }[v.label] || "the evidence";
    $("heatmap-legend").textContent = `${colour} where ${what} is strongest, relative to the rest of the ` +
      `picture (each of ${body.grid} x ${body.grid} windows scored on its own).`;
    $("heatmap-box").hidden = false;
    showStatus("");
  } catch (err) {
    if (mine === uploadNumber) showStatus("The server could not be reached: " + err, true);
  } finally {
    $("explain-btn").disabled = false;
  }
}

async function check(file) {
  lastFile = file;
  const mine = ++uploadNumber;
  $("heatmap-box").hidden = true;
  $("result").hidden = true;
  const preview = $("preview");
  preview.src = URL.createObjectURL(file);
  preview.hidden = false;
  $("drop-text").textContent = file.name;
  showStatus("Checking " + file.name + " ...");
  const form = new FormData();
  form.append("file", file, file.name);
  const headers = authHeaders();
  let response, body;
  try {
    response = await fetch("/v1/detect", { method: "POST", body: form, headers });
    body = await readReply(response);
  } catch (err) {
    if (mine === uploadNumber) showStatus("The server could not be reached: " + err, true);
    return;
  }
  if (mine !== uploadNumber) return;  // a later file's check is under way, or done
  if (!response.ok || !body) {
    const e = body && body.error ? body.error : { code: "http_" + response.status, message: response.statusText };
    if (response.status === 401) $("key-box").open = true;
    showStatus(`Not checked (${e.code}): ${e.message}`, true);
    return;
  }
  showStatus("");
  showVerdict(body);
}

function setUp() {
  const drop = $("drop");
  $("explain-btn").addEventListener("click", showHeatmap);
  $("file").addEventListener("change", (e) => { if (e.target.files.length) check(e.target.files[0]); });
  drop.addEventListener("dragover", (e) => { e.preventDefault(); drop.classList.add("over"); });
  drop.addEventListener("dragleave", () => drop.classList.remove("over"));
  drop.addEventListener("drop", (e) => {
    e.preventDefault();
    drop.classList.remove("over");
    if (e.dataTransfer.files.length) check(e.dataTransfer.files[0]);
  });
  fetch("/v1/models").then((r) => r.json()).then((b) => {
    const m = b.models && b.models[0];
    if (m) $("model-footer").textContent = `Model: ${m.name} ${m.version}. ${m.trained_on}`;
  }).catch(() => {});
}

setUp();

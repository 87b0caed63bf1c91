// The console's page: which pipeline is served (from the OpenAPI spec), the recognise form,
// messages, the API-key and confirmation dialogs. Galleries live in galleries.js.

import {ApiError, apiKey, call, forgetKey, readAsDataUrl, setKeyPrompt, spec} from "./api.js";
import {categoryBars, drawPicture, loadImage, objectList, tags} from "./draw.js";
import {initGalleries} from "./galleries.js";

const $ = (id) => document.getElementById(id);

// The served pipeline is told by the endpoint its spec has (one pipeline per service).
const PIPELINES = {
  "/image-classification": "image_classification",
  "/multilabel-image-classification": "image_multilabel_classification",
  "/shitu-infer": "PP-ShiTuV2",
};

let pipeline = null;
let inferPath = null;
let picked = null; // {image: data URL or http(s) URL, name}

// ------------------------------------------------------------------ messages
function show(text, kind) {
  const box = $("message");
  box.textContent = text;
  box.className = kind;
  box.hidden = false;
}

export function report(error) {
  // The API's own words (errorMsg) when it answered; otherwise what the browser says.
  const text = error instanceof ApiError ? `Error ${error.status}: ${error.message}` : `Error: ${error.message || error}`;
  show(text, "error");
}

const info = (text) => show(text, "info");

window.addEventListener("error", (event) => report(event.error || event.message));
window.addEventListener("unhandledrejection", (event) => report(event.reason));

// ------------------------------------------------------------------ dialogs
function ask(dialog, focus) {
  return new Promise((resolve) => {
    dialog.addEventListener("close", () => resolve(dialog.returnValue === "ok"), {once: true});
    dialog.returnValue = "";
    dialog.showModal();
    focus?.focus();
  });
}

function confirmAction(text) {
  $("confirm-text").textContent = text;
  return ask($("confirm-dialog"), $("confirm-ok"));
}

async function promptKey() {
  $("key-input").value = "";
  const ok = await ask($("key-dialog"), $("key-input"));
  return ok ? $("key-input").value.trim() || null : null;
}

function keyChanged() {
  const set = Boolean(apiKey());
  $("key-state").hidden = !set;
  $("forget-key").hidden = !set;
}

// ------------------------------------------------------------------ the recognise form
async function pickFile(file) {
  if (!file) return;
  picked = {image: await readAsDataUrl(file), name: file.name};
  $("image-url").value = "";
  $("drop-zone").dataset.picked = file.name;
  await recognise();
}

function number(id) {
  const value = $(id).value.trim();
  return value === "" ? undefined : Number(value);
}

function request(image) {
  const body = {image, visualize: false}; // drawn here: no result JPEG to send back
  if (pipeline === "image_classification") body.topk = number("topk");
  if (pipeline === "image_multilabel_classification") body.threshold = number("threshold");
  if (pipeline === "PP-ShiTuV2") {
    const key = $("infer-index").value;
    if (key) body.indexKey = key;
    body.detThreshold = number("det-threshold");
    body.recThreshold = number("rec-threshold");
    body.topk = number("shitu-topk");
  }
  return body;
}

async function recognise() {
  const url = $("image-url").value.trim();
  if (url) picked = {image: url, name: url};
  if (!picked) {
    show("Pick, drop or paste an image first.", "info");
    return;
  }
  $("infer-button").disabled = true;
  $("message").hidden = true;
  $("result").hidden = true; // an earlier answer must not pass for this one's
  try {
    const [result, image] = await Promise.all([call("POST", inferPath, request(picked.image)), loadImage(picked.image)]);
    const objects = result.detectedObjects || [];
    drawPicture($("result-canvas"), image, objects);
    const list = $("result-list");
    if (pipeline === "image_classification") list.replaceChildren(categoryBars(result.categories));
    if (pipeline === "image_multilabel_classification") list.replaceChildren(tags(result.categories));
    if (pipeline === "PP-ShiTuV2") list.replaceChildren(objectList(objects));
    $("result").hidden = false;
  } finally {
    $("infer-button").disabled = false;
  }
}

function guard(work) {
  return (...args) => work(...args).catch(report);
}

function wireForm() {
  $("infer-form").addEventListener("submit", (event) => {
    event.preventDefault();
    guard(recognise)();
  });
  $("image-file").addEventListener("change", guard((event) => pickFile(event.target.files[0])));
  const zone = $("drop-zone");
  zone.addEventListener("dragover", (event) => { event.preventDefault(); zone.classList.add("over"); });
  zone.addEventListener("dragleave", () => zone.classList.remove("over"));
  zone.addEventListener("drop", guard(async (event) => {
    event.preventDefault();
    zone.classList.remove("over");
    const file = event.dataTransfer.files[0];
    if (file) return pickFile(file);
    const url = event.dataTransfer.getData("text/uri-list") || event.dataTransfer.getData("text/plain");
    if (url) { $("image-url").value = url.trim(); return recognise(); }
  }));
}

function indexesChanged(indexes, selected) {
  const choose = $("infer-index");
  const current = selected || choose.value;
  choose.replaceChildren();
  if (!choose.dataset.keyRequired) choose.append(new Option("(the service's default index)", ""));
  for (const index of indexes) choose.append(new Option(`${index.indexKey.slice(0, 8)}… (${index.size ?? "?"} items)`, index.indexKey));
  if ([...choose.options].some((o) => o.value === current)) choose.value = current;
}

// ------------------------------------------------------------------ start
function keyRequired(openapi) {
  // Without a default index in its config, the service's /shitu-infer schema requires indexKey.
  const ref = openapi.paths["/shitu-infer"]?.post?.requestBody?.content?.["application/json"]?.schema?.$ref || "";
  const schema = openapi.components?.schemas?.[ref.split("/").pop()];
  return Boolean(schema?.required?.includes("indexKey"));
}

async function start() {
  setKeyPrompt(promptKey, keyChanged);
  keyChanged();
  $("forget-key").addEventListener("click", forgetKey);
  const openapi = await spec();
  inferPath = Object.keys(PIPELINES).find((path) => path in openapi.paths);
  if (!inferPath) throw new Error("this service serves no pipeline the console knows");
  pipeline = PIPELINES[inferPath];
  inferPath = inferPath.slice(1); // relative to the page
  document.body.dataset.pipeline = pipeline;
  $("pipeline-name").textContent = pipeline;
  // Only the controls of the served pipeline.
  for (const node of document.querySelectorAll("[data-pipeline]")) {
    node.hidden = node.dataset.pipeline !== pipeline;
  }
  wireForm();
  $("main").hidden = false;
  if (pipeline === "PP-ShiTuV2") {
    if (keyRequired(openapi)) $("infer-index").dataset.keyRequired = "1";
    await initGalleries({report, info, confirm: confirmAction, indexesChanged});
  }
  document.body.dataset.ready = "1"; // for tests: the page is wired
}

start().catch((error) => {
  report(error);
  $("message").append(" (reload the page to try again)");
  $("pipeline-name").textContent = "not connected";
  document.body.dataset.ready = "1";
});

// PP-ShiTuV2 galleries through the public API: list (GET shitu-indexes), create
// (POST shitu-index-build), add (POST shitu-index-add), browse and search
// (GET shitu-index/{key}/items), remove items (POST shitu-index-remove), delete (DELETE shitu-index/{key}).

import {call, readAsDataUrl} from "./api.js";
import {el} from "./draw.js";

const PAGE = 24;
const $ = (id) => document.getElementById(id);

const state = {indexes: [], selected: null, staged: [], offset: 0, total: 0};
let ui; // {report(error), info(text), confirm(text) -> Promise<bool>, indexesChanged(indexes, selected)}

const items = (n) => `${n} item${n === 1 ? "" : "s"}`;
const stem = (name) => name.replace(/\.[^.]*$/, "");
const isPicture = (source) => /^(https?:|data:image\/)/i.test(source || "");

async function guarded(work) {
  try {
    await work();
  } catch (error) {
    ui.report(error);
  }
}

// ------------------------------------------------------------------ the index list
export async function refreshIndexes() {
  const result = await call("GET", "shitu-indexes");
  state.indexes = result.indexes;
  if (state.selected && !state.indexes.some((i) => i.indexKey === state.selected)) state.selected = null;
  renderIndexes();
  ui.indexesChanged(state.indexes, state.selected);
  if (state.selected) await loadItems();
  else $("browser").hidden = true;
}

function renderIndexes() {
  const body = $("index-table").tBodies[0];
  body.replaceChildren();
  for (const info of state.indexes) {
    const browse = el("button", {type: "button", class: "link"}, "open");
    browse.addEventListener("click", () => guarded(() => select(info.indexKey)));
    const row = el("tr", {"data-key": info.indexKey},
      el("td", {}, el("code", {}, info.indexKey)), el("td", {class: "size"}, String(info.size ?? "?")),
      el("td", {}, info.error ? el("span", {class: "error"}, info.error) : String(info.labels ?? "")), el("td", {}, browse));
    if (info.indexKey === state.selected) row.classList.add("selected");
    body.append(row);
  }
  $("no-indexes").hidden = state.indexes.length > 0;
  $("index-table").hidden = state.indexes.length === 0;
  updateButtons();
}

async function select(key) {
  state.selected = key;
  state.offset = 0;
  $("label-filter").value = "";
  renderIndexes();
  ui.indexesChanged(state.indexes, key);
  await loadItems();
}

// ------------------------------------------------------------------ staged images (create / add)
async function stageFiles(files) {
  for (const file of files) {
    state.staged.push({image: await readAsDataUrl(file), label: stem(file.name), name: file.name});
  }
  renderStaged();
}

function stageUrl() {
  const url = $("gallery-url").value.trim();
  if (!url) return;
  const name = decodeURIComponent(url.split(/[?#]/)[0].split("/").pop() || url);
  state.staged.push({image: url, label: stem(name), name: url});
  $("gallery-url").value = "";
  renderStaged();
}

function renderStaged() {
  const list = $("staged");
  list.replaceChildren();
  state.staged.forEach((entry, position) => {
    const label = el("input", {type: "text", value: entry.label, "aria-label": `label of ${entry.name}`, class: "label"});
    label.addEventListener("input", () => { entry.label = label.value; });
    const drop = el("button", {type: "button", class: "link"}, "remove");
    drop.addEventListener("click", () => { state.staged.splice(position, 1); renderStaged(); });
    list.append(el("li", {}, el("img", {src: entry.image, alt: "", class: "thumb"}), label,
      el("span", {class: "muted source"}, entry.name), drop));
  });
  updateButtons();
}

function updateButtons() {
  $("create-index").disabled = state.staged.length === 0;
  $("add-to-index").disabled = state.staged.length === 0 || !state.selected;
  $("add-to-index").textContent = state.selected ? `Add to ${state.selected.slice(0, 8)}…` : "Add to the selected gallery";
}

const pairs = () => state.staged.map((entry) => ({image: entry.image, label: entry.label}));

async function createIndex() {
  const result = await call("POST", "shitu-index-build", {imageLabelPairs: pairs()});
  const count = Object.keys(result.idMap).length;
  state.staged = [];
  renderStaged();
  ui.info(`Gallery ${result.indexKey} created with ${items(count)}.`);
  state.selected = result.indexKey;
  await refreshIndexes();
}

async function addToIndex() {
  const key = state.selected;
  const result = await call("POST", "shitu-index-add", {indexKey: key, imageLabelPairs: pairs(), changedOnly: true});
  state.staged = [];
  renderStaged();
  ui.info(`Added ${items(result.addedIds.length)} to ${key} (now ${items(result.indexSize)}).`);
  await refreshIndexes();
}

// ------------------------------------------------------------------ browsing one gallery
async function loadItems() {
  const key = state.selected;
  const query = new URLSearchParams({offset: state.offset, limit: PAGE});
  const filter = $("label-filter").value.trim();
  if (filter) query.set("label", filter);
  const page = await call("GET", `shitu-index/${encodeURIComponent(key)}/items?${query}`);
  state.total = page.total;
  const info = state.indexes.find((i) => i.indexKey === key);
  $("browser").hidden = false;
  $("browse-key").textContent = key;
  $("browse-size").textContent = info ? items(info.size) : "";
  const list = $("items");
  list.replaceChildren();
  for (const item of page.items) list.append(itemCard(key, item));
  if (!page.items.length) list.append(el("li", {class: "muted"}, filter ? "No item matches." : "This gallery is empty."));
  const last = Math.min(state.offset + PAGE, page.total);
  $("page-info").textContent = page.total ? `${state.offset + 1}–${last} of ${page.total}` : "";
  $("prev-page").disabled = state.offset === 0;
  $("next-page").disabled = last >= page.total;
}

function itemCard(key, item) {
  const picture = isPicture(item.source)
    ? el("img", {src: item.source, alt: item.label, class: "thumb", loading: "lazy"})
    : el("span", {class: "thumb none"}, "no picture");
  const remove = el("button", {type: "button", class: "link danger"}, "remove");
  remove.addEventListener("click", () => guarded(async () => {
    if (!await ui.confirm(`Remove item #${item.id} (${item.label}) from this gallery?`)) return;
    await call("POST", "shitu-index-remove", {indexKey: key, ids: [item.id], changedOnly: true});
    ui.info(`Removed item #${item.id} (${item.label}).`);
    await refreshIndexes();
  }));
  const source = item.source && !isPicture(item.source)
    ? el("span", {class: "muted source", title: item.source}, item.source.split(/[\\/]/).pop()) : "";
  return el("li", {"data-id": item.id}, picture, el("span", {class: "label"}, item.label),
    el("span", {class: "muted"}, ` #${item.id}`), source, remove);
}

async function deleteIndex() {
  const key = state.selected;
  if (!await ui.confirm(`Delete gallery ${key} and all its items? This cannot be undone.`)) return;
  await call("DELETE", `shitu-index/${encodeURIComponent(key)}`);
  ui.info(`Gallery ${key} deleted.`);
  state.selected = null;
  await refreshIndexes();
}

// ------------------------------------------------------------------ wiring
export function initGalleries(page) {
  ui = page;
  $("stage-form").addEventListener("submit", (event) => event.preventDefault()); // Enter in a label: no reload
  $("refresh-indexes").addEventListener("click", () => guarded(refreshIndexes));
  $("gallery-files").addEventListener("change", (event) => guarded(async () => {
    await stageFiles([...event.target.files]);
    event.target.value = ""; // the same files may be picked again
  }));
  $("gallery-url-add").addEventListener("click", stageUrl);
  $("clear-staged").addEventListener("click", () => { state.staged = []; renderStaged(); });
  $("create-index").addEventListener("click", () => guarded(createIndex));
  $("add-to-index").addEventListener("click", () => guarded(addToIndex));
  $("delete-index").addEventListener("click", () => guarded(deleteIndex));
  let typing;
  $("label-filter").addEventListener("input", () => {
    clearTimeout(typing);
    typing = setTimeout(() => guarded(async () => { state.offset = 0; await loadItems(); }), 250);
  });
  $("prev-page").addEventListener("click", () => guarded(async () => { state.offset = Math.max(0, state.offset - PAGE); await loadItems(); }));
  $("next-page").addEventListener("click", () => guarded(async () => { state.offset += PAGE; await loadItems(); }));
  renderStaged();
  return guarded(refreshIndexes);
}

// The service's public API, as any client calls it: JSON in, PaddleX's envelope out.
// The API key (when the service has one) is asked once, kept for this browser tab
// (sessionStorage) and sent as the X-API-Key header.

const KEY_STORE = "viewfinder.apiKey";

/** An error answer of the API: `message` is the envelope's errorMsg. */
export class ApiError extends Error {
  constructor(status, message) {
    super(message);
    this.status = status;
  }
}

let askForKey = async () => null; // set by the page: shows the key dialog, resolves to the key or null
let onKeyChange = () => {};
let asking = null; // calls refused at the same time share one dialog

export function setKeyPrompt(prompt, changed) {
  askForKey = prompt;
  onKeyChange = changed;
}

export function apiKey() {
  return sessionStorage.getItem(KEY_STORE);
}

export function forgetKey() {
  sessionStorage.removeItem(KEY_STORE);
  onKeyChange();
}

async function send(method, path, body) {
  const headers = {};
  const key = apiKey();
  if (key) headers["X-API-Key"] = key;
  if (body !== undefined) headers["Content-Type"] = "application/json";
  // Relative URLs: the API is wherever the page is (also behind a proxy's path prefix).
  return fetch(path, {method, headers, body: body === undefined ? undefined : JSON.stringify(body)});
}

async function envelope(response) {
  const text = await response.text();
  try {
    return JSON.parse(text);
  } catch {
    // Not our envelope (a proxy's error page, a dropped connection): say what came back.
    return {errorCode: response.status, errorMsg: `HTTP ${response.status} ${response.statusText}: ${text.slice(0, 200)}`};
  }
}

/** Call the API; resolves to the envelope's `result` (or the whole envelope with `raw`), throws ApiError. */
export async function call(method, path, body, {raw = false} = {}) {
  let response = await send(method, path, body);
  if (response.status === 401) {
    // The key is missing or wrong: ask for it once, then try again with it.
    asking ??= askForKey().finally(() => { asking = null; });
    const key = await asking;
    if (key) {
      sessionStorage.setItem(KEY_STORE, key);
      onKeyChange();
      response = await send(method, path, body);
    }
    if (response.status === 401) forgetKey(); // wrong: ask again next time
  }
  const data = await envelope(response);
  if (!response.ok || (data.errorCode !== undefined && data.errorCode !== 0 && !raw)) {
    throw new ApiError(response.status, data.errorMsg || `HTTP ${response.status}`);
  }
  return raw ? data : data.result;
}

/** The OpenAPI spec (keyed like every API path). */
export async function spec() {
  return call("GET", "openapi.json", undefined, {raw: true});
}

/** A File as a data: URL, which the service takes as an `image` field (Base64 with its prefix). */
export function readAsDataUrl(file) {
  return new Promise((resolve, reject) => {
    const reader = new FileReader();
    reader.onload = () => resolve(reader.result);
    reader.onerror = () => reject(new Error(`cannot read ${file.name}`));
    reader.readAsDataURL(file);
  });
}

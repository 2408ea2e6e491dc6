"use strict";
// The search page: pick or upload a query image, type an instruction, show the hits as pictures.
// Everything from the server is inserted as text or attributes (never as HTML).
(() => {
  const $ = (id) => document.getElementById(id);
  const state = { maxUpload: 10 * 1024 * 1024, galleryId: null, offset: 0, total: 0, pageSize: 48 };

  function showError(message) {
    $("error").textContent = message || "";
    $("error").hidden = !message;
  }

  function megabytes(n) {
    return (n / (1024 * 1024)).toFixed(n < 1024 * 1024 ? 2 : 1) + " MB";
  }

  async function errorText(response) {
    try {
      const body = await response.json();
      if (body && body.detail) {
        return typeof body.detail === "string" ? body.detail : JSON.stringify(body.detail);
      }
    } catch (_) { /* not JSON */ }
    return `The server answered ${response.status} ${response.statusText}.`;
  }

  async function loadInfo() {
    try {
      const r = await fetch("/api/info");
      if (!r.ok) throw new Error(await errorText(r));
      const info = await r.json();
      state.maxUpload = info.max_upload_bytes;
      $("info").textContent = `${info.count.toLocaleString()} gallery images · model ${info.retriever} · ` +
        `uploads up to ${megabytes(info.max_upload_bytes)}`;
    } catch (e) {
      $("info").textContent = "Could not read the index information: " + e.message;
    }
  }

  async function loadGallery() {
    const r = await fetch(`/api/gallery?offset=${state.offset}&limit=${state.pageSize}`);
    if (!r.ok) { showError(await errorText(r)); return; }
    const page = await r.json();
    state.total = page.total;
    for (const item of page.items) {
      const button = document.createElement("button");
      button.type = "button";
      button.className = "pick";
      button.title = item.name;
      button.dataset.id = item.id;
      const img = document.createElement("img");
      img.loading = "lazy";
      img.alt = item.name;
      img.src = item.url + "?size=128";
      button.appendChild(img);
      button.addEventListener("click", () => pickGallery(item));
      $("gallery").appendChild(button);
    }
    state.offset += page.items.length;
    $("more").hidden = state.offset >= state.total;
  }

  function setPreview(src, label) {
    $("preview").src = src;
    $("picked-name").textContent = label;
    $("picked").hidden = false;
  }

  function markSelected() {
    for (const b of document.querySelectorAll(".pick")) {
      b.classList.toggle("selected", b.dataset.id === state.galleryId);
    }
  }

  function pickGallery(item) {
    showError("");
    state.galleryId = item.id;
    $("file").value = "";
    setPreview(item.url + "?size=256", "Gallery: " + item.name);
    markSelected();
  }

  function clearQueryImage() {
    state.galleryId = null;
    $("file").value = "";
    $("picked").hidden = true;
    $("preview").removeAttribute("src");
    markSelected();
  }

  $("file").addEventListener("change", () => {
    showError("");
    const file = $("file").files[0];
    if (!file) return;
    // Checked here to spare a pointless upload; the server enforces the same limit.
    if (!window.megapairsSkipClientChecks && file.size > state.maxUpload) {
      showError(`"${file.name}" is ${megabytes(file.size)}: uploads are limited to ${megabytes(state.maxUpload)}.`);
      clearQueryImage();
      return;
    }
    state.galleryId = null;
    markSelected();
    setPreview(URL.createObjectURL(file), "Upload: " + file.name);
  });

  $("clear").addEventListener("click", clearQueryImage);
  $("more").addEventListener("click", loadGallery);

  function render(data) {
    const results = $("results");
    results.replaceChildren();
    for (const hit of data.hits) {
      const figure = document.createElement("figure");
      figure.className = "hit-card";
      const link = document.createElement("a");
      link.href = hit.url;
      link.target = "_blank";
      link.rel = "noopener";
      const img = document.createElement("img");
      img.className = "hit";
      img.alt = `result ${hit.rank}: ${hit.name}`;
      img.src = hit.url + "?size=256";
      img.dataset.id = hit.id;
      link.appendChild(img);
      const caption = document.createElement("figcaption");
      const score = document.createElement("span");
      score.className = "score";
      score.textContent = `#${hit.rank} · ${hit.score.toFixed(4)}`;
      const name = document.createElement("span");
      name.className = "name";
      name.textContent = hit.name;
      caption.append(score, name);
      figure.append(link, caption);
      results.appendChild(figure);
    }
    $("status").textContent = data.hits.length
      ? `${data.hits.length} results in ${data.took_ms} ms.`
      : "No results.";
  }

  $("query").addEventListener("submit", async (event) => {
    event.preventDefault();
    showError("");
    const form = new FormData();
    const file = $("file").files[0];
    const text = $("text").value.trim();
    if (file) form.append("image", file, file.name);
    else if (state.galleryId) form.append("gallery_id", state.galleryId);
    if (text) form.append("text", text);
    form.append("k", $("k").value);
    if (!file && !state.galleryId && !text) {
      showError("Give a query image (upload or pick one), an instruction, or both.");
      return;
    }
    $("search").disabled = true;
    $("status").textContent = "Searching…";
    try {
      const r = await fetch("/api/search", { method: "POST", body: form });
      if (!r.ok) {
        $("results").replaceChildren();
        $("status").textContent = "";
        showError(await errorText(r));
        return;
      }
      render(await r.json());
    } catch (e) {
      $("status").textContent = "";
      showError("The search request failed: " + e.message);
    } finally {
      $("search").disabled = false;
    }
  });

  loadInfo();
  loadGallery();
})();

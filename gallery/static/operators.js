/* crosscam gallery: operators' pages, loaded after gallery.js (whose helpers it uses).
 *
 * - Corrections on the identity page (admin): tick sightings and split them into a new
 *   identity, or merge other identities into this one (POST /api/identities/<gid>/split|merge).
 * - #/search[?thumbnail=<camera>/<file>.jpg]: search by example, from a photo (scaled down
 *   in the browser to a JPEG under the upload cap) or a stored crop (POST /api/search).
 *
 * Markup goes through gallery.js's html``/setHtml only (escaped, Trusted Types).
 */
'use strict';

const SEARCH_MAX_SIDE = 512;      // a photo is scaled to fit this before upload (person crops are small)
const SEARCH_JPEG_QUALITY = 0.9;

const OperatorApi = {
  async split(gid, trackletIds) {
    return Api.request('POST', `/api/identities/${encodeURIComponent(gid)}/split`, { tracklet_ids: trackletIds });
  },
  async merge(gid, others) {
    return Api.request('POST', `/api/identities/${encodeURIComponent(gid)}/merge`, { global_ids: others });
  },
  /** POST /api/search: body a JPEG blob, or none with thumbnail=; -> {candidates, identities}. */
  async search(q, blob) {
    const p = new URLSearchParams({ limit: String(q.limit) });
    if (q.thumbnail) p.set('thumbnail', q.thumbnail);
    if (q.cameras) p.set('cameras', q.cameras.join(','));
    if (q.ts_from_ns !== null) p.set('since', String(Math.round(q.ts_from_ns)));
    if (q.ts_to_ns !== null) p.set('until', String(Math.round(q.ts_to_ns)));
    let resp;
    try {
      resp = await fetch(`/api/search?${p}`, {
        method: 'POST',
        headers: { ...Auth.headers(), Accept: 'application/json', ...(blob ? { 'Content-Type': 'image/jpeg' } : {}) },
        body: blob || undefined,
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(`the gallery server cannot be reached (${err.message})`);
    }
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) throw new ApiError((data && data.error) || `${resp.status}`, resp.status);
    return {
      candidates: data.candidates.map((c) => ({ ...Api.sighting(c), distance: Number(c.distance) })),
      identities: data.identities,
    };
  },
};

function isAdmin() { return Boolean(state.config.who && state.config.who.role === 'admin'); }

// --------------------------------------------------------------------------------------
// corrections on the identity page (called by pageIdentity after each render)

function decorateIdentity(gid, sightings) {
  const page = document.querySelector('section[data-page=identity]');
  if (!page) return;
  drawPlanRoute(gid, sightings);
  document.querySelectorAll('.sighting[data-tracklet]').forEach((row) => {
    const ref = row.querySelector('img[data-src]');
    const links = row.querySelector('.row');
    if (ref && links) {
      const thumb = ref.dataset.src.replace(/^\/thumbnails\//, '');
      const a = document.createElement('a');
      a.className = 'hint';
      a.href = `#/search?thumbnail=${encodeURIComponent(decodeURIComponent(thumb))}`;
      a.textContent = ' · search with this crop →';
      links.appendChild(a);
    }
    if (!isAdmin() || sightings.length < 2) return;
    const box = document.createElement('input');
    box.type = 'checkbox';
    box.className = 'split-pick';
    box.value = row.dataset.tracklet;
    box.setAttribute('aria-label', `not this person: ${row.dataset.tracklet}`);
    row.querySelector('.step').appendChild(box);
  });
  if (!isAdmin()) return;
  const panel = document.createElement('div');
  panel.className = 'panel corrections';
  setHtml(panel, html`
    <h2>Corrections</h2>
    <div class="row">
      <button type="button" id="split" ${sightings.length < 2 ? 'disabled' : ''}>Split ticked sightings into a new identity</button>
      <span class="hint">they are not this person; the linker never puts them back</span>
    </div>
    <div class="row" style="margin-top:8px">
      <input type="text" id="merge-ids" placeholder="other identity ids, comma separated" aria-label="identities to merge">
      <button type="button" id="merge">Merge into this identity</button>
    </div>
    <div class="hint" id="correction-status" data-correction-status></div>`);
  page.appendChild(panel);
  const status = panel.querySelector('#correction-status');
  const done = (text) => { status.textContent = text; state.lastRender = ''; state.identities = null; };
  panel.querySelector('#split').addEventListener('click', async () => {
    const ids = [...document.querySelectorAll('.split-pick:checked')].map((b) => b.value);
    if (!ids.length) { status.textContent = 'Tick the sightings that are not this person first.'; return; }
    try {
      const res = await OperatorApi.split(gid, ids);
      done(`Split ${res.tracklet_ids.length} sighting(s) into ${res.global_id}.`);
      location.hash = `#/identity/${encodeURIComponent(res.global_id)}`;
    } catch (err) { status.textContent = `Split refused: ${err.message}`; }
  });
  panel.querySelector('#merge').addEventListener('click', async () => {
    const others = panel.querySelector('#merge-ids').value.split(',').map((x) => x.trim()).filter(Boolean);
    if (!others.length) { status.textContent = 'Enter the identities to merge.'; return; }
    try {
      const res = await OperatorApi.merge(gid, others);
      done(`Merged ${res.merged_ids.join(', ')} into ${res.global_id} (${res.tracklets_moved} sightings).`);
    } catch (err) { status.textContent = `Merge refused: ${err.message}`; }
  });
}

// --------------------------------------------------------------------------------------
// search by example

/** A photo file as a JPEG blob no larger than SEARCH_MAX_SIDE on a side. */
async function photoBlob(file) {
  const bitmap = await createImageBitmap(file);
  const scale = Math.min(1, SEARCH_MAX_SIDE / Math.max(bitmap.width, bitmap.height));
  const canvas = document.createElement('canvas');
  canvas.width = Math.max(1, Math.round(bitmap.width * scale));
  canvas.height = Math.max(1, Math.round(bitmap.height * scale));
  canvas.getContext('2d').drawImage(bitmap, 0, 0, canvas.width, canvas.height);
  return new Promise((resolve, reject) => canvas.toBlob(
    (b) => (b ? resolve(b) : reject(new Error('the image could not be encoded'))), 'image/jpeg', SEARCH_JPEG_QUALITY,
  ));
}

async function pageSearch(token, params) {
  try { await ensureApiCameras(); okPage(); } catch (err) { failPage(err, 'search'); return; }
  if (token !== state.routeToken) return;
  const thumb = params.get('thumbnail') || '';
  setHtml(view(), html`
    <section data-page="search">
      <div class="pagehead"><div><h1>Search by photo</h1><div class="sub">Who looks like the person in a photo or a stored crop, within chosen cameras and a time window</div></div></div>
      <div class="panel">
        <form class="query" id="s">
          <fieldset><legend>Example</legend>
            ${thumb ? html`<div class="querybox">${thumbHtml(Api.thumbUrl(thumb), 'the example crop')}<div>stored crop <span class="mono">${esc(thumb)}</span></div></div>` : ''}
            <input type="file" name="photo" accept="image/jpeg,image/png,image/webp" aria-label="photo of a person" ${thumb ? 'hidden' : ''}>
          </fieldset>
          <fieldset><legend>Where and when (UTC)</legend>
            <div class="camchecks">${allCameras().map((c) => html`<label><input type="checkbox" name="camera" value="${esc(c.id)}"> ${esc(c.id)}</label>`)}</div>
            <div class="row">
              <label class="field">from<input type="datetime-local" step="1" name="from"></label>
              <label class="field">to<input type="datetime-local" step="1" name="to"></label>
              <label class="field">top<input type="number" name="limit" min="1" max="100" value="${DEFAULT_LIMIT}"></label>
            </div>
          </fieldset>
          <div class="row"><button class="primary" type="submit">Search</button><span class="hint" id="s-status"></span></div>
        </form>
      </div>
      <div class="panel" style="margin-top:18px"><h2>Candidates</h2><div id="s-results"><div class="hint">Ranked sightings appear here, closest first.</div></div></div>
    </section>`);
  const form = document.getElementById('s');
  form.addEventListener('submit', (ev) => { ev.preventDefault(); runSearch(form, thumb); });
}

async function runSearch(form, thumb) {
  const out = document.getElementById('s-results');
  const status = document.getElementById('s-status');
  const chosen = [...form.querySelectorAll('input[name=camera]:checked')].map((i) => i.value);
  const q = {
    thumbnail: thumb, cameras: chosen.length ? chosen : null,
    ts_from_ns: fromInputTime(form.elements.from.value), ts_to_ns: fromInputTime(form.elements.to.value),
    limit: Math.max(1, Math.min(100, Number(form.elements.limit.value) || DEFAULT_LIMIT)),
  };
  const file = form.elements.photo.files[0];
  if (!thumb && !file) { status.textContent = 'Choose a photo first.'; return; }
  status.textContent = 'searching…';
  try {
    const blob = thumb ? null : await photoBlob(file);
    const res = await OperatorApi.search(q, blob);
    status.textContent = `${res.candidates.length} candidate${res.candidates.length === 1 ? '' : 's'}`;
    setHtml(out, res.candidates.length ? html`<div class="results">${res.candidates.map((c, i) => html`
      <div class="cand" data-candidate="${esc(c.tracklet_id)}" data-camera="${esc(c.camera_id)}" data-distance="${c.distance}">
        <div class="rank">#${i + 1}</div>
        ${thumbHtml(c.thumbnail_url, `candidate ${i + 1}`)}
        <div class="who"><div><a href="#/identity/${encodeURIComponent(c.global_id)}"><b>${esc(c.global_id || '(unlinked)')}</b></a> on <b>${esc(c.camera_id)}</b></div>
          <div class="time">${esc(fmtTime(c.ts_start_ns))} → ${esc(fmtTime(c.ts_end_ns, false))}</div>
          <div class="hint mono">${esc(c.tracklet_id)}</div></div>
        <div class="dist"><span>distance <b>${c.distance.toFixed(3)}</b></span><div class="bar"><i style="width:${Math.min(100, (100 * c.distance) / MAX_DISTANCE_SHOWN).toFixed(1)}%"></i></div></div>
      </div>`)}</div>` : html`<div class="empty">No sighting in these cameras and this time window.</div>`);
  } catch (err) {
    status.textContent = '';
    setHtml(out, html`<div class="error" data-error>Search failed: <span class="mono">${esc(err.message)}</span></div>`);
  }
}

// --------------------------------------------------------------------------------------
// cameras at runtime (#/registry, admin): add, edit, disable, remove cameras and links

const RegistryApi = {
  async get() { return Api.request('GET', '/api/registry'); },
  async add(cam) { return Api.request('POST', '/api/registry/cameras', cam); },
  async edit(id, change) { return Api.request('PATCH', `/api/registry/cameras/${encodeURIComponent(id)}`, change); },
  async remove(id) { return Api.request('DELETE', `/api/registry/cameras/${encodeURIComponent(id)}`); },
  async link(l) { return Api.request('PUT', '/api/registry/links', l); },
  async unlink(a, b) { return Api.request('DELETE', `/api/registry/links/${encodeURIComponent(a)}/${encodeURIComponent(b)}`); },
};

function numberOrNull(text) { return text === '' ? null : Number(text); }

async function pageRegistry(token, note = '') {
  let reg;
  let status = { cameras: {} };
  try {
    reg = await RegistryApi.get();
    try { status = await Gallery.status(reg.cameras.map((c) => c.id)); } catch (_) { /* shown as unknown */ }
    okPage();
  } catch (err) {
    if (token === state.routeToken) failPage(err, 'camera registry');
    return;
  }
  if (token !== state.routeToken) return;
  const st = (id) => (status.cameras[id] || { state: 'unknown' }).state;
  setHtml(view(), html`
    <section data-page="registry">
      <div class="pagehead"><div><h1>Site setup</h1><div class="sub">Cameras and links, changed while everything runs: ingest starts or stops within seconds, the ReID topology follows (registry version ${reg.version})</div></div></div>
      <div class="panel">
        <h2>Cameras</h2>
        <table class="list"><thead><tr><th>Camera</th><th>Ingest</th><th>Source</th><th>Map x, y</th><th></th></tr></thead>
        <tbody>${reg.cameras.map((c) => html`<tr data-camera="${esc(c.id)}" data-enabled="${c.enabled ? '1' : '0'}">
          <td><b>${esc(c.id)}</b><div class="hint">${esc(c.name)}</div></td>
          <td><span class="state ${esc(st(c.id).replace(/\s+/g, ''))}" data-state="${esc(st(c.id))}"><span class="dot"></span>${esc(c.enabled ? st(c.id) : 'disabled')}</span></td>
          <td>${c.has_source ? 'set (hidden)' : html`<span class="hint">none</span>`}</td>
          <td class="mono">${c.location.x ?? '—'}, ${c.location.y ?? '—'}</td>
          <td><button type="button" class="small" data-toggle="${esc(c.id)}">${c.enabled ? 'Disable' : 'Enable'}</button>
              <button type="button" class="small" data-remove="${esc(c.id)}">Remove</button></td>
        </tr>`)}</tbody></table>
      </div>
      <div class="grid2" style="margin-top:18px">
        <form class="panel query" id="add-camera">
          <h2>Add a camera</h2>
          <div class="row">
            <label class="field">id<input name="id" required></label>
            <label class="field">name<input name="name"></label>
          </div>
          <label class="field">source (RTSP URL or a video file path; never shown again)<input type="password" name="source" autocomplete="off"></label>
          <div class="row">
            <label class="field">map x<input type="number" step="any" name="x"></label>
            <label class="field">map y<input type="number" step="any" name="y"></label>
          </div>
          <div class="row"><button class="primary" type="submit">Add camera</button></div>
        </form>
        <form class="panel query" id="add-link">
          <h2>Links (walking times)</h2>
          <div class="links">${reg.links.map((l) => html`<div class="row" data-link="${esc(l.a)}|${esc(l.b)}">${esc(l.a)} ↔ ${esc(l.b)} · ${l.min_transit_s}–${l.max_transit_s} s
            <button type="button" class="small" data-unlink="${esc(l.a)}|${esc(l.b)}">Remove</button></div>`)}</div>
          <div class="row">
            <label class="field">a<input name="a" required></label><label class="field">b<input name="b" required></label>
            <label class="field">min s<input type="number" step="any" name="min" value="0"></label>
            <label class="field">max s<input type="number" step="any" name="max" value="60"></label>
          </div>
          <div class="row"><button type="submit">Add or replace link</button></div>
        </form>
      </div>
      <div class="hint" id="registry-status" data-registry-status>${note}</div>
    </section>`);
  const statusEl = document.getElementById('registry-status');
  const act = async (fn, text) => {
    try {
      await fn();
      state.apiCameras = null;
      pageRegistry(token, text);
    } catch (err) { statusEl.textContent = `Refused: ${err.message}`; }
  };
  view().querySelectorAll('[data-toggle]').forEach((b) => b.addEventListener('click', () => {
    const enabled = b.closest('tr').dataset.enabled !== '1';
    act(() => RegistryApi.edit(b.dataset.toggle, { enabled }), `${b.dataset.toggle} ${enabled ? 'enabled' : 'disabled'}.`);
  }));
  view().querySelectorAll('[data-remove]').forEach((b) => b.addEventListener('click', () => act(
    () => RegistryApi.remove(b.dataset.remove), `${b.dataset.remove} removed.`)));
  view().querySelectorAll('[data-unlink]').forEach((b) => b.addEventListener('click', () => {
    const [a, c] = b.dataset.unlink.split('|');
    act(() => RegistryApi.unlink(a, c), `link ${a}–${c} removed.`);
  }));
  const add = document.getElementById('add-camera');
  add.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = add.elements;
    const cam = { id: f.id.value.trim(), name: f.name.value.trim(), source: f.source.value.trim(),
      location: { x: numberOrNull(f.x.value), y: numberOrNull(f.y.value) } };
    act(() => RegistryApi.add(cam), `${cam.id} added.`);
  });
  const link = document.getElementById('add-link');
  link.addEventListener('submit', (ev) => {
    ev.preventDefault();
    const f = link.elements;
    act(() => RegistryApi.link({ a: f.a.value.trim(), b: f.b.value.trim(),
      min_transit_s: Number(f.min.value), max_transit_s: Number(f.max.value) }), 'link saved.');
  });
  schedule(() => { if (document.activeElement === document.body || !document.activeElement) pageRegistry(token); else schedule(() => pageRegistry(token)); });
}

// --------------------------------------------------------------------------------------
// uploads (#/uploads, operator): a recorded video for a camera, replayed as that camera

const UploadApi = {
  async list() { return Api.request('GET', '/api/uploads'); },
  /** POST /api/uploads?camera=&start_ns=&name=&x=&y= with the file as the body (streamed). */
  async send(file, q) {
    const p = new URLSearchParams({ camera: q.camera, start_ns: String(q.start_ns) });
    if (q.name) p.set('name', q.name);
    if (q.x !== null) p.set('x', String(q.x));
    if (q.y !== null) p.set('y', String(q.y));
    let resp;
    try {
      resp = await fetch(`/api/uploads?${p}`, {
        method: 'POST', body: file, cache: 'no-store',
        headers: { ...Auth.headers(), Accept: 'application/json', 'Content-Type': 'application/octet-stream' },
      });
    } catch (err) {
      throw new ApiError(`the gallery server cannot be reached (${err.message})`);
    }
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) throw new ApiError((data && data.error) || `${resp.status}`, resp.status);
    return data;
  },
};

function uploadRows(ups) {
  return ups.map((u) => {
    const pct = u.frames_total ? Math.min(100, (100 * u.frames_read) / u.frames_total) : 0;
    return html`<tr data-upload="${esc(u.upload_id)}" data-state="${esc(u.state)}" data-progress="${pct.toFixed(1)}">
      <td><b>${esc(u.camera_id)}</b><div class="hint mono">${esc(u.upload_id)}</div></td>
      <td>${esc(fmtTime(u.start_ns))}<div class="hint">${esc(fmtDuration(u.duration_s))} · ${u.fps.toFixed(1)} fps</div></td>
      <td class="progress" style="min-width:220px"><div class="bar"><i style="width:${pct.toFixed(1)}%"></i></div>
        <div class="hint">${u.frames_read} / ${u.frames_total} frames read · ${u.frames_published} sent to the detector</div></td>
      <td>${esc(u.state)}</td>
      <td>${u.state === 'done' ? html`<a href="#/identities">identities →</a>` : ''}</td>
    </tr>`;
  });
}

async function pageUploads(token) {
  let ups = [];
  try { ups = await UploadApi.list(); okPage(); } catch (err) { if (token === state.routeToken) failPage(err, 'uploads'); return; }
  if (token !== state.routeToken) return;
  const existing = document.getElementById('uploads-body');
  if (existing && document.querySelector('section[data-page=uploads]')) {
    setHtml(existing, html`${uploadRows(ups)}`);
  } else {
    setHtml(view(), html`
      <section data-page="uploads">
        <div class="pagehead"><div><h1>Uploads</h1><div class="sub">A recorded video of a camera (new or existing), replayed through the pipeline as that camera, at the time it was recorded</div></div></div>
        <form class="panel query" id="upload">
          <div class="row">
            <label class="field">video file<input type="file" name="video" accept="video/*" required></label>
            <label class="field">camera id<input name="camera" required></label>
            <label class="field">camera name (new camera)<input name="name"></label>
          </div>
          <div class="row">
            <label class="field">recording started (UTC)<input type="datetime-local" step="1" name="start" required></label>
            <label class="field">map x<input type="number" step="any" name="x"></label>
            <label class="field">map y<input type="number" step="any" name="y"></label>
          </div>
          <div class="row"><button class="primary" type="submit">Upload</button><span class="hint" id="upload-status" data-upload-status></span></div>
        </form>
        <div class="panel" style="margin-top:18px"><h2>Replays</h2>
          <table class="list"><thead><tr><th>Camera</th><th>Recorded</th><th>Progress</th><th>State</th><th></th></tr></thead>
          <tbody id="uploads-body">${uploadRows(ups)}</tbody></table></div>
      </section>`);
    const form = document.getElementById('upload');
    form.addEventListener('submit', async (ev) => {
      ev.preventDefault();
      const f = form.elements;
      const status = document.getElementById('upload-status');
      const start = fromInputTime(f.start.value);
      if (start === null) { status.textContent = 'Give the recording\'s start time.'; return; }
      status.textContent = 'uploading…';
      try {
        const up = await UploadApi.send(f.video.files[0], { camera: f.camera.value.trim(), name: f.name.value.trim(),
          start_ns: start, x: numberOrNull(f.x.value), y: numberOrNull(f.y.value) });
        status.textContent = `Stored as ${up.upload_id}: ${up.frames_total} frames; the replay starts in a moment.`;
        state.apiCameras = null;
        pageUploads(token);
      } catch (err) { status.textContent = `Refused: ${err.message}`; }
    });
  }
  schedule(() => pageUploads(token));
}

// --------------------------------------------------------------------------------------
// the site plan (#/sitemap, admin): a plan image, per camera 4+ image <-> plan point pairs;
// the identity page draws a person's path on the plan over time

const SiteApi = {
  async get() { return Api.request('GET', '/api/sitemap'); },
  async setCamera(cam, pairs) { return Api.request('PUT', `/api/sitemap/cameras/${encodeURIComponent(cam)}`, pairs); },
  async uploadPlan(file) {
    const resp = await fetch('/api/uploads/plan', { method: 'POST', body: file, cache: 'no-store',
      headers: { ...Auth.headers(), Accept: 'application/json', 'Content-Type': 'application/octet-stream' } });
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (!resp.ok) throw new ApiError((data && data.error) || `${resp.status}`, resp.status);
    return data;
  },
};

/** An <svg> over the plan image (plan pixel coordinates), appended to `box`. */
async function planCanvas(box, plan) {
  box.replaceChildren();
  const wrap = document.createElement('div');
  wrap.className = 'plan';
  const img = document.createElement('img');
  img.alt = 'site plan';
  img.src = await imageUrl(plan.url);
  const svg = svgEl('svg', { viewBox: `0 0 ${plan.width} ${plan.height}`, class: 'plan-overlay' });
  wrap.append(img, svg);
  box.appendChild(wrap);
  return svg;
}

async function drawPlanRoute(gid, sightings) {
  const page = document.querySelector('section[data-page=identity]');
  const tracks = sightings.filter((s) => s.plan_track && s.plan_track.length);
  if (!page || !tracks.length) return;
  let site;
  try { site = await SiteApi.get(); } catch (_) { return; }
  if (!site.plan) return;
  const panel = document.createElement('div');
  panel.className = 'panel plan-panel';
  panel.id = 'plan-route';
  setHtml(panel, html`<h2>Path on the site plan</h2><div class="plan-box"></div>
    <div class="legend"><span>the person's foot point over time, from cameras with a homography; numbers: sightings in time order</span></div>`);
  page.insertBefore(panel, page.querySelector('.grid2'));
  const svg = await planCanvas(panel.querySelector('.plan-box'), site.plan);
  const pts = tracks.flatMap((s) => s.plan_track).sort((a, b) => a[0] - b[0]);
  svg.appendChild(svgEl('polyline', { points: pts.map((p) => `${p[1]},${p[2]}`).join(' '), class: 'plan-path' }));
  tracks.forEach((s) => {
    const first = s.plan_track[0];
    const i = sightings.indexOf(s) + 1;
    svg.appendChild(svgEl('circle', { cx: first[1], cy: first[2], r: Math.max(4, site.plan.width / 120), class: 'plan-stop' }));
    svg.appendChild(svgEl('text', { x: first[1], y: first[2], class: 'plan-label' }, String(i)));
  });
}

async function pageSiteMap(token, note = '') {
  let site;
  try { [site] = await Promise.all([SiteApi.get(), ensureApiCameras()]); okPage(); } catch (err) { if (token === state.routeToken) failPage(err, 'site plan'); return; }
  if (token !== state.routeToken) return;
  const cams = allCameras();
  setHtml(view(), html`
    <section data-page="sitemap">
      <div class="pagehead"><div><h1>Site plan</h1><div class="sub">Upload a plan; for each camera give 4 or more ground points in the camera's image and click where they are on the plan</div></div></div>
      <div class="grid2">
        <div class="panel">
          <form class="query" id="plan-form"><div class="row">
            <label class="field">plan image<input type="file" name="plan" accept="image/png,image/jpeg,image/webp"></label>
            <button type="submit">Upload plan</button></div></form>
          <div id="plan-edit" class="plan-box">${site.plan ? '' : html`<div class="empty">No plan yet.</div>`}</div>
        </div>
        <form class="panel query" id="pairs-form">
          <h2>Camera homography</h2>
          <label class="field">camera<select name="camera">${cams.map((c) => html`<option value="${esc(c.id)}">${esc(c.id)}${site.cameras[c.id] ? ' ✓' : ''}</option>`)}</select></label>
          <label class="field">image points (pixels; x,y; x,y; …)<input name="image" placeholder="0,400; 640,400; 640,470; 0,470"></label>
          <label class="field">plan points (click the plan, or type x,y; x,y; …)<input name="plan" data-plan-points></label>
          <div class="row"><button class="primary" type="submit">Save homography</button><button type="button" class="small" id="clear-plan-points">clear plan points</button></div>
          <div class="hint" id="sitemap-status" data-sitemap-status>${note}</div>
        </form>
      </div>
    </section>`);
  const form = document.getElementById('pairs-form');
  const status = document.getElementById('sitemap-status');
  const parse = (text) => text.split(';').map((p) => p.trim()).filter(Boolean).map((p) => p.split(',').map(Number));
  const fill = () => {
    const had = site.cameras[form.elements.camera.value];
    form.elements.image.value = had ? had.image_points.map((p) => p.join(',')).join('; ') : '';
    form.elements.plan.value = had ? had.plan_points.map((p) => p.join(',')).join('; ') : '';
  };
  fill();
  form.elements.camera.addEventListener('change', fill);
  document.getElementById('clear-plan-points').addEventListener('click', () => { form.elements.plan.value = ''; });
  if (site.plan) {
    const svg = await planCanvas(document.getElementById('plan-edit'), site.plan);
    Object.values(site.cameras).forEach((c) => c.plan_points.forEach((p) => svg.appendChild(
      svgEl('circle', { cx: p[0], cy: p[1], r: Math.max(3, site.plan.width / 150), class: 'plan-stop' }))));
    svg.addEventListener('click', (ev) => {
      const pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      const p = pt.matrixTransform(svg.getScreenCTM().inverse());
      const v = form.elements.plan.value.trim();
      form.elements.plan.value = `${v ? `${v}; ` : ''}${p.x.toFixed(1)},${p.y.toFixed(1)}`;
      svg.appendChild(svgEl('circle', { cx: p.x, cy: p.y, r: Math.max(3, site.plan.width / 150), class: 'plan-pick' }));
    });
  }
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    try {
      await SiteApi.setCamera(form.elements.camera.value, { image_points: parse(form.elements.image.value), plan_points: parse(form.elements.plan.value) });
      pageSiteMap(token, `Homography of ${form.elements.camera.value} saved: new sightings are placed on the plan.`);
    } catch (err) { status.textContent = `Refused: ${err.message}`; }
  });
  document.getElementById('plan-form').addEventListener('submit', async (ev) => {
    ev.preventDefault();
    const file = ev.target.elements.plan.files[0];
    if (!file) { status.textContent = 'Choose a plan image first.'; return; }
    try { await SiteApi.uploadPlan(file); imageCache.delete('/api/sitemap/plan.png'); pageSiteMap(token, 'Plan stored.'); } catch (err) { status.textContent = `Refused: ${err.message}`; }
  });
}

/* crosscam gallery: a dependency-free single-page UI.
 *
 * Pages (hash routes): #/identities, #/identity/<global id>, #/cameras,
 * #/reidentify[?global_id=…|tracklet_id=…]. Data comes from the ReID API
 * through the gallery's /api proxy; the camera map and live camera status from
 * the gallery's own /gallery routes. Only `Api` below knows the ReID API's
 * routes and JSON; every page works on the shapes it returns.
 */
'use strict';

const NS_PER_MS = 1e6;
const NS_PER_S = 1e9;
const MAP_WIDTH = 1000;          // SVG user units; the map scales to its box
const MAP_MIN_HEIGHT = 330;
const MAP_MAX_HEIGHT = 560;
const MAP_PAD = 110;             // room around the outermost cameras for labels
const ROUTE_ARC = 58;            // how far a route leg bows off the straight line
const ROUTE_ARC_GROWTH = 30;     // extra bow for each repeat of the same leg
const DRAG_MIN_PX = 6;           // a smaller drag on the map is a click, not a box
const DEFAULT_LIMIT = 20;
const IDENTITIES_LIMIT = 1000;   // the ReID API's own cap on one list
const RECENT_TRACKLETS = 1000;   // the cameras page counts over the latest this many
const MAX_DISTANCE_SHOWN = 1.0;  // cosine distance that fills the distance bar

const state = {
  config: { refresh_s: 5, map: null },
  timer: null,
  lastRender: '',
  apiCameras: null,  // {cameras, links} from the ReID API when the gallery has no cameras file
  identities: null,
  routeToken: 0,
};

// --------------------------------------------------------------------------------------
// small helpers

// Markup is only ever built by the html`` tag below: every ${value} in it is escaped
// unless it is itself html`` (or an array of them). setHtml() is the one place markup
// reaches the DOM, through the page's only Trusted Types policy: the server's CSP
// (require-trusted-types-for 'script') makes the browser refuse any other innerHTML.

class SafeHtml {
  constructor(text) { this.text = text; }
  toString() { return this.text; }
}

function escapeText(value) {
  return String(value ?? '').replace(/[&<>"'`]/g, (c) => ({
    '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;', '`': '&#96;',
  }[c]));
}

function renderValue(value) {
  if (value instanceof SafeHtml) return value.text;
  if (Array.isArray(value)) return value.map(renderValue).join('');
  return escapeText(value);
}

/** Tagged template: markup with every interpolated value escaped. */
function html(strings, ...values) {
  let out = strings[0];
  values.forEach((v, i) => { out += renderValue(v) + strings[i + 1]; });
  return new SafeHtml(out);
}

/** A value escaped once (kept for readability at call sites: html`` escapes anyway). */
function esc(value) { return value instanceof SafeHtml ? value : new SafeHtml(escapeText(value)); }

const htmlPolicy = window.trustedTypes
  ? window.trustedTypes.createPolicy('crosscam', { createHTML: (text) => text })
  : { createHTML: (text) => text };

/** Put html`` markup into `el` (nothing else is accepted), then load its images. */
function setHtml(el, markup) {
  if (!(markup instanceof SafeHtml)) throw new TypeError('setHtml takes html`` markup only');
  el.innerHTML = htmlPolicy.createHTML(markup.text);
  loadImages(el);
}

// --------------------------------------------------------------------------------------
// the access token: kept for this browser tab only (sessionStorage), sent on every call

const TOKEN_KEY = 'crosscam.token';
const Auth = {
  get() { return sessionStorage.getItem(TOKEN_KEY) || ''; },
  set(token) { sessionStorage.setItem(TOKEN_KEY, token); },
  clear() { sessionStorage.removeItem(TOKEN_KEY); },
  headers() { const t = Auth.get(); return t ? { Authorization: `Bearer ${t}` } : {}; },
  /** A link may carry #token=… (printed by `crosscam demo`): keep it, drop it from the URL. */
  fromUrl() {
    const m = location.hash.match(/^#token=([A-Za-z0-9_-]{8,128})$/);
    if (!m) return;
    Auth.set(m[1]);
    history.replaceState(null, '', `${location.pathname}${location.search}#/identities`);
  },
};

// Images need the token too: fetched with it, shown from blob: URLs (kept per URL).
const imageCache = new Map();

async function imageUrl(url) {
  if (!imageCache.has(url)) {
    imageCache.set(url, (async () => {
      const resp = await fetch(url, { headers: Auth.headers(), cache: 'no-store' });
      if (!resp.ok) throw new Error(`${resp.status}`);
      return URL.createObjectURL(await resp.blob());
    })());
  }
  return imageCache.get(url);
}

function loadImages(root) {
  root.querySelectorAll('img[data-src]').forEach((img) => {
    imageUrl(img.dataset.src)
      .then((src) => { img.src = src; })
      .catch(() => { imageCache.delete(img.dataset.src); img.dataset.failed = '1'; img.alt = 'image unavailable'; });
  });
}

function pad2(n) { return String(n).padStart(2, '0'); }

/** "2009-01-01 00:01:23" (UTC) from nanoseconds; date left out when `withDate` is false. */
function fmtTime(ns, withDate = true) {
  if (ns === null || ns === undefined || Number.isNaN(Number(ns))) return '—';
  const d = new Date(Number(ns) / NS_PER_MS);
  const time = `${pad2(d.getUTCHours())}:${pad2(d.getUTCMinutes())}:${pad2(d.getUTCSeconds())}`;
  if (!withDate) return time;
  return `${d.getUTCFullYear()}-${pad2(d.getUTCMonth() + 1)}-${pad2(d.getUTCDate())} ${time}`;
}

function fmtDuration(seconds) {
  const s = Math.max(0, Number(seconds) || 0);
  if (s < 60) return `${s.toFixed(s < 10 ? 1 : 0)} s`;
  if (s < 3600) return `${Math.floor(s / 60)} min ${Math.round(s % 60)} s`;
  return `${Math.floor(s / 3600)} h ${Math.round((s % 3600) / 60)} min`;
}

const AGO_MAX_S = 86400;  // older than this: the time itself reads better than "n hours ago"

function fmtAgo(ns) {
  if (!ns) return 'never';
  const s = (Date.now() - Number(ns) / NS_PER_MS) / 1000;
  if (s > AGO_MAX_S) return fmtTime(ns);
  return s < 0 ? 'just now' : `${fmtDuration(s)} ago`;
}

/** datetime-local value (UTC) <-> nanoseconds. */
function toInputTime(ns) {
  if (ns === null || ns === undefined) return '';
  return new Date(Number(ns) / NS_PER_MS).toISOString().slice(0, 19);
}
function fromInputTime(text) {
  if (!text) return null;
  const ms = Date.parse(`${text}${text.length === 16 ? ':00' : ''}Z`);
  return Number.isNaN(ms) ? null : ms * NS_PER_MS;
}

function cameraName(id) {
  const cam = allCameras().find((c) => c.id === id);
  return cam && cam.name && cam.name !== id ? `${cam.name}` : id;
}

function cameraIndex(id) {
  return Math.max(0, allCameras().findIndex((c) => c.id === id));
}

function thumbHtml(url, alt) {
  if (!url) return html`<div class="thumb"><span class="none">no image</span></div>`;
  return html`<div class="thumb"><img data-src="${url}" alt="${alt}"></div>`;
}

function setBanner(message) {
  const el = document.getElementById('banner');
  el.hidden = !message;
  el.textContent = message || '';
}

function setConnection(ok, text) {
  const el = document.getElementById('conn');
  el.classList.toggle('ok', ok);
  el.classList.toggle('bad', !ok);
  document.getElementById('conn-text').textContent = text;
}

// --------------------------------------------------------------------------------------
// the one place that knows the ReID API

class ApiError extends Error {
  constructor(message, status = 0) { super(message); this.status = status; }
}

const Api = {
  async request(method, path, body) {
    let resp;
    try {
      resp = await fetch(path, {
        method,
        headers: { ...Auth.headers(), Accept: 'application/json', ...(body ? { 'Content-Type': 'application/json' } : {}) },
        body: body ? JSON.stringify(body) : undefined,
        cache: 'no-store',
      });
    } catch (err) {
      throw new ApiError(`the gallery server cannot be reached (${err.message})`);
    }
    let data = null;
    try { data = await resp.json(); } catch (_) { data = null; }
    if (resp.status === 401) {
      Auth.clear();
      pageLogin('Your token is not valid (or it expired): sign in again.');
      throw new ApiError('not signed in', 401);
    }
    if (!resp.ok) {
      const why = (data && (data.error || data.detail)) || `${resp.status} ${resp.statusText}`;
      throw new ApiError(typeof why === 'string' ? why : JSON.stringify(why), resp.status);
    }
    return data;
  },

  /** The ReID API serves crops at /thumbnails/<thumbnail_ref> (proxied by the gallery). */
  thumbUrl(ref) {
    return ref ? `/thumbnails/${ref.split('/').map(encodeURIComponent).join('/')}` : '';
  },

  /** A tracklet row of /api/identities/<gid>, /api/tracklets or a re-identify candidate. */
  sighting(t) {
    return {
      tracklet_id: t.tracklet_id,
      camera_id: t.camera_id,
      ts_start_ns: Number(t.ts_start_ns),
      ts_end_ns: Number(t.ts_end_ns),
      global_id: t.global_id || '',
      thumbnail_url: t.thumbnail_url || Api.thumbUrl(t.thumbnail_ref),
      plan_track: t.plan_track || [],  // [t_ns, x, y] on the site plan (operators.js draws it)
    };
  },

  /** GET /api/identities: [{global_id, cameras, first_seen_ns, last_seen_ns, tracklets, thumbnail_url}], latest first. */
  async identities() {
    const data = await Api.request('GET', `/api/identities?limit=${IDENTITIES_LIMIT}`);
    return data.map((i) => ({
      global_id: i.global_id,
      cameras: i.cameras,
      first_seen_ns: Number(i.first_seen_ns),
      last_seen_ns: Number(i.last_seen_ns),
      sightings: Number(i.tracklets),
      thumbnail_url: i.thumbnail_url,
    })).sort((a, b) => b.last_seen_ns - a.last_seen_ns);
  },

  /** GET /api/identities/<gid>: {global_id, cameras, tracklets: [tracklet row]} (404: unknown). */
  async identityDetail(gid) {
    const data = await Api.request('GET', `/api/identities/${encodeURIComponent(gid)}`);
    const sightings = data.tracklets.map(Api.sighting).sort((a, b) => a.ts_start_ns - b.ts_start_ns);
    return { global_id: data.global_id, sightings };
  },

  /** GET /api/cameras: {window_s, cameras: [{id, name, location: {x, y, lat, lon}}], links}. */
  async cameras() {
    const data = await Api.request('GET', '/api/cameras');
    return {
      links: data.links,
      cameras: data.cameras.map((c) => {
        const loc = c.location || {};
        const geo = loc.x == null && loc.lon != null;
        return { id: c.id, name: c.name || c.id, x: geo ? loc.lon : loc.x ?? null, y: geo ? loc.lat : loc.y ?? null, geo };
      }),
    };
  },

  /** GET /api/tracklets?limit=: the latest tracklets of every camera, newest first. */
  async tracklets(limit) {
    return (await Api.request('GET', `/api/tracklets?limit=${limit}`)).map(Api.sighting);
  },

  /**
   * GET /api/reidentify?global_id=|tracklet_id=&cameras=a,b&area=x0,y0,x1,y1&since=&until=&limit=
   * -> {candidates: [{tracklet_id, camera_id, ts_start_ns, ts_end_ns, global_id, distance, thumbnail_ref}], identities}
   */
  async reidentify(q) {
    const p = new URLSearchParams({ limit: String(q.limit) });
    if (q.global_id) p.set('global_id', q.global_id); else p.set('tracklet_id', q.tracklet_id);
    if (q.cameras) p.set('cameras', q.cameras.join(','));
    if (q.area) p.set('area', q.area.join(','));
    if (q.ts_from_ns !== null) p.set('since', String(Math.round(q.ts_from_ns)));
    if (q.ts_to_ns !== null) p.set('until', String(Math.round(q.ts_to_ns)));
    const data = await Api.request('GET', `/api/reidentify?${p}`);
    return {
      candidates: data.candidates.map((c) => ({ ...Api.sighting(c), distance: Number(c.distance) })),
      identities: data.identities,
    };
  },
};

const Gallery = {
  async config() { return Api.request('GET', '/gallery/config'); },
  async status(ids) {
    return Api.request('GET', `/gallery/cameras/status?ids=${ids.map(encodeURIComponent).join(',')}`);
  },
};

/** Cameras for the map: the cameras file when the gallery has one, else the ReID API's. */
function allCameras() {
  if (state.config.map && state.config.map.cameras.length) return state.config.map.cameras;
  return (state.apiCameras && state.apiCameras.cameras) || [];
}

async function ensureApiCameras() {
  if (state.config.map && state.config.map.cameras.length) return;
  if (!state.apiCameras) state.apiCameras = await Api.cameras();
}

// --------------------------------------------------------------------------------------
// the camera map (SVG)

function svgEl(tag, attrs = {}, text) {
  const el = document.createElementNS('http://www.w3.org/2000/svg', tag);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, v);
  if (text !== undefined) el.textContent = text;
  return el;
}

/** A projection of map coordinates into the SVG box, keeping the aspect ratio. */
function projection(cams) {
  const placed = cams.filter((c) => c.x !== null && c.y !== null);
  const flip = placed.some((c) => c.geo);  // lat grows upwards, image y downwards
  const xs = placed.map((c) => c.x);
  const ys = placed.map((c) => (flip ? -c.y : c.y));
  const x0 = Math.min(...xs); const x1 = Math.max(...xs);
  const y0 = Math.min(...ys); const y1 = Math.max(...ys);
  const spanX = Math.max(x1 - x0, 1e-9);
  const spanY = Math.max(y1 - y0, 1e-9);
  const inner = MAP_WIDTH - 2 * MAP_PAD;
  const scale = Math.min(inner / spanX, (MAP_MAX_HEIGHT - 2 * MAP_PAD) / spanY);
  const height = Math.min(MAP_MAX_HEIGHT, Math.max(MAP_MIN_HEIGHT, spanY * scale + 2 * MAP_PAD));
  const offX = (MAP_WIDTH - spanX * scale) / 2;
  const offY = (height - spanY * scale) / 2;
  const toSvg = (x, y) => [offX + (x - x0) * scale, offY + ((flip ? -y : y) - y0) * scale];
  const toMap = (sx, sy) => {
    const x = (sx - offX) / scale + x0;
    const y = (sy - offY) / scale + y0;
    return [x, flip ? -y : y];
  };
  return { height, toSvg, toMap, placed };
}

/**
 * Draw the camera map.
 * opts: {links, seen: Set, selected: Set, status: {id: state}, route: [sighting], area, onArea(area)}
 */
function drawMap(container, opts = {}) {
  const cams = allCameras();
  container.replaceChildren();
  const proj = projection(cams);
  if (!proj.placed.length) {
    setHtml(container, html`<div class="empty">No camera has a map location (set <code>location = { x, y }</code> in the cameras file).</div>`);
    return null;
  }
  const svg = svgEl('svg', { viewBox: `0 0 ${MAP_WIDTH} ${proj.height}`, class: 'map', role: 'img', 'aria-label': 'camera map' });
  const defs = svgEl('defs');
  const marker = svgEl('marker', { id: 'arrow', viewBox: '0 0 10 10', refX: '8', refY: '5', markerWidth: '7', markerHeight: '7', orient: 'auto-start-reverse' });
  marker.appendChild(svgEl('path', { d: 'M0,0 L10,5 L0,10 z', fill: '#2563eb' }));
  defs.appendChild(marker);
  svg.appendChild(defs);
  const pos = Object.fromEntries(proj.placed.map((c) => [c.id, proj.toSvg(c.x, c.y)]));

  for (const link of opts.links || []) {
    if (!pos[link.a] || !pos[link.b]) continue;
    const [ax, ay] = pos[link.a]; const [bx, by] = pos[link.b];
    const line = svgEl('line', { x1: ax, y1: ay, x2: bx, y2: by, class: 'link' });
    line.appendChild(svgEl('title', {}, `${link.a} ↔ ${link.b}: ${link.min_transit_s}–${link.max_transit_s} s walk`));
    svg.appendChild(line);
  }

  const areaRect = svgEl('rect', { class: 'area', visibility: 'hidden' });
  svg.appendChild(areaRect);
  const showArea = (area) => {
    if (!area) { areaRect.setAttribute('visibility', 'hidden'); return; }
    const [ax, ay] = proj.toSvg(area[0], area[1]);
    const [bx, by] = proj.toSvg(area[2], area[3]);
    areaRect.setAttribute('x', Math.min(ax, bx)); areaRect.setAttribute('y', Math.min(ay, by));
    areaRect.setAttribute('width', Math.abs(bx - ax)); areaRect.setAttribute('height', Math.abs(by - ay));
    areaRect.setAttribute('visibility', 'visible');
  };
  showArea(opts.area);

  // the route: one bowed leg per change of camera, numbered in time order
  const route = (opts.route || []).filter((s) => pos[s.camera_id]);
  const legs = new Map();
  const stepsAt = new Map();
  route.forEach((s, i) => {
    const list = stepsAt.get(s.camera_id) || [];
    list.push(i + 1);
    stepsAt.set(s.camera_id, list);
    if (i === 0) return;
    const prev = route[i - 1];
    if (prev.camera_id === s.camera_id) return;
    const key = [prev.camera_id, s.camera_id].sort().join('|');
    const n = legs.get(key) || 0;
    legs.set(key, n + 1);
    const [ax, ay] = pos[prev.camera_id]; const [bx, by] = pos[s.camera_id];
    const mx = (ax + bx) / 2; const my = (ay + by) / 2;
    // the normal of the leg taken in one fixed direction, so "there" bows one way, "back" the other
    const forward = prev.camera_id < s.camera_id;
    const [px, py] = forward ? [ax, ay] : [bx, by]; const [qx, qy] = forward ? [bx, by] : [ax, ay];
    const len = Math.hypot(qx - px, qy - py) || 1;
    const bow = (forward ? -1 : 1) * (ROUTE_ARC + n * ROUTE_ARC_GROWTH);
    const cx = mx + (-(qy - py) / len) * bow; const cy = my + ((qx - px) / len) * bow;
    svg.appendChild(svgEl('path', { d: `M${ax},${ay} Q${cx},${cy} ${bx},${by}`, class: 'route', 'marker-end': 'url(#arrow)' }));
    const tx = (ax + 2 * cx + bx) / 4; const ty = (ay + 2 * cy + by) / 4;
    const gap = (s.ts_start_ns - prev.ts_end_ns) / NS_PER_S;
    svg.appendChild(svgEl('text', { x: tx, y: ty + (bow < 0 ? -8 : 18), class: 'steptime' },
      `${fmtTime(s.ts_start_ns, false)} (+${fmtDuration(gap)})`));
  });

  for (const cam of proj.placed) {
    const [x, y] = pos[cam.id];
    const st = (opts.status || {})[cam.id];
    const cls = ['cam'];
    if (opts.seen && opts.seen.has(cam.id)) cls.push('seen');
    if (opts.selected && opts.selected.has(cam.id)) cls.push('sel');
    if (st) cls.push(st.replace(/\s+/g, ''));
    const g = svgEl('g', { class: cls.join(' '), 'data-camera': cam.id });
    g.appendChild(svgEl('title', {}, `${cam.id}${cam.name && cam.name !== cam.id ? ` — ${cam.name}` : ''} (x ${cam.x}, y ${cam.y})`));
    // camera glyph: a body with a lens
    g.appendChild(svgEl('circle', { cx: x, cy: y, r: 21 }));
    g.appendChild(svgEl('path', { d: `M${x - 10},${y - 6} h13 v12 h-13 z M${x + 3},${y - 2} l7,-5 v14 l-7,-5 z`, fill: (opts.seen && opts.seen.has(cam.id)) || (opts.selected && opts.selected.has(cam.id)) ? '#fff' : '#0f1b2d' }));
    if (st) g.appendChild(svgEl('circle', { cx: x + 16, cy: y - 16, r: 8, class: 'status' }));
    g.appendChild(svgEl('text', { x, y: y + 46 }, cam.id));
    if (cam.name && cam.name !== cam.id) g.appendChild(svgEl('text', { x, y: y + 66, class: 'sub' }, cam.name));
    const steps = stepsAt.get(cam.id);
    if (steps) {
      const label = steps.length > 3 ? `${steps.slice(0, 3).join(',')}…` : steps.join(',');
      const w = Math.max(26, 10 * label.length + 14);
      const m = svgEl('g', { class: 'stepmark' });
      m.appendChild(svgEl('rect', { x: x - w / 2, y: y - 56, width: w, height: 24, rx: 12 }));
      m.appendChild(svgEl('text', { x, y: y - 44 }, label));
      g.appendChild(m);
    }
    svg.appendChild(g);
  }

  if (opts.onArea) {
    svg.classList.add('drawable');
    let start = null;
    const point = (ev) => {
      const pt = svg.createSVGPoint();
      pt.x = ev.clientX; pt.y = ev.clientY;
      const p = pt.matrixTransform(svg.getScreenCTM().inverse());
      return [p.x, p.y, ev.clientX, ev.clientY];
    };
    svg.addEventListener('pointerdown', (ev) => { start = point(ev); svg.setPointerCapture(ev.pointerId); });
    svg.addEventListener('pointermove', (ev) => {
      if (!start) return;
      const p = point(ev);
      const a = proj.toMap(start[0], start[1]); const b = proj.toMap(p[0], p[1]);
      showArea([Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])]);
    });
    svg.addEventListener('pointerup', (ev) => {
      if (!start) return;
      const p = point(ev);
      const moved = Math.hypot(p[2] - start[2], p[3] - start[3]);
      const a = proj.toMap(start[0], start[1]); const b = proj.toMap(p[0], p[1]);
      start = null;
      if (moved < DRAG_MIN_PX) { opts.onArea(null, ev.target.closest('[data-camera]')?.dataset.camera); return; }
      opts.onArea([Math.min(a[0], b[0]), Math.min(a[1], b[1]), Math.max(a[0], b[0]), Math.max(a[1], b[1])].map((v) => Math.round(v * 10) / 10));
    });
  }
  container.appendChild(svg);
  return svg;
}

// --------------------------------------------------------------------------------------
// the timeline of one identity: a lane per camera, a bar per sighting

const TL_WIDTH = 1000;
const TL_LABEL_W = 80;
const TL_LANE_H = 42;
const TL_AXIS_H = 30;
const TL_TICKS = 6;
const TL_MIN_BAR = 5;
const TL_LABEL_MIN_BAR = 18;  // narrower bars carry no step number
const NICE_STEPS_S = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200, 21600, 43200, 86400];

function drawTimeline(container, sightings) {
  container.replaceChildren();
  if (!sightings.length) return;
  const order = allCameras().map((c) => c.id);
  const lanes = [...new Set(sightings.map((s) => s.camera_id))]
    .sort((a, b) => (order.indexOf(a) - order.indexOf(b)) || a.localeCompare(b));
  const t0 = Math.min(...sightings.map((s) => s.ts_start_ns));
  const t1 = Math.max(...sightings.map((s) => s.ts_end_ns));
  const spanS = Math.max((t1 - t0) / NS_PER_S, 1);
  const plotW = TL_WIDTH - TL_LABEL_W - 16;
  const xOf = (ns) => TL_LABEL_W + ((ns - t0) / NS_PER_S / spanS) * plotW;
  const height = lanes.length * TL_LANE_H + TL_AXIS_H;
  const svg = svgEl('svg', { viewBox: `0 0 ${TL_WIDTH} ${height}`, class: 'timeline', role: 'img', 'aria-label': 'sightings timeline' });
  lanes.forEach((cam, i) => {
    svg.appendChild(svgEl('rect', { x: TL_LABEL_W, y: i * TL_LANE_H + 4, width: plotW, height: TL_LANE_H - 8, rx: 5, class: 'lane' }));
    svg.appendChild(svgEl('text', { x: 4, y: i * TL_LANE_H + TL_LANE_H / 2, class: 'lanelabel' }, cam));
  });
  const step = NICE_STEPS_S.find((v) => spanS / v <= TL_TICKS) || NICE_STEPS_S[NICE_STEPS_S.length - 1];
  const firstTick = Math.ceil(t0 / NS_PER_S / step) * step;
  for (let t = firstTick; t <= t1 / NS_PER_S; t += step) {
    const x = xOf(t * NS_PER_S);
    svg.appendChild(svgEl('line', { x1: x, x2: x, y1: 0, y2: lanes.length * TL_LANE_H, class: 'tick' }));
    svg.appendChild(svgEl('text', { x, y: height - 8, class: 'ticklabel' }, fmtTime(t * NS_PER_S, false)));
  }
  const mid = (s) => lanes.indexOf(s.camera_id) * TL_LANE_H + TL_LANE_H / 2;
  sightings.forEach((s, i) => {
    if (i > 0) {
      const p = sightings[i - 1];
      svg.appendChild(svgEl('line', { x1: xOf(p.ts_end_ns), y1: mid(p), x2: xOf(s.ts_start_ns), y2: mid(s), class: 'hop' }));
    }
  });
  sightings.forEach((s, i) => {
    const x = xOf(s.ts_start_ns);
    const w = Math.max(TL_MIN_BAR, xOf(s.ts_end_ns) - x);
    const bar = svgEl('rect', { x, y: mid(s) - 13, width: w, height: 26, rx: 5, class: 'bar' });
    bar.appendChild(svgEl('title', {}, `${i + 1}. ${s.camera_id} ${fmtTime(s.ts_start_ns, false)}–${fmtTime(s.ts_end_ns, false)}`));
    svg.appendChild(bar);
    if (w >= TL_LABEL_MIN_BAR) svg.appendChild(svgEl('text', { x: x + w / 2, y: mid(s), class: 'barlabel' }, String(i + 1)));
  });
  container.appendChild(svg);
}

function mapLinks() {
  if (state.config.map && state.config.map.cameras.length) return state.config.map.links;
  return (state.apiCameras && state.apiCameras.links) || [];
}

// --------------------------------------------------------------------------------------
// pages

const view = () => document.getElementById('view');

function schedule(fn) {
  clearTimeout(state.timer);
  state.timer = setTimeout(fn, state.config.refresh_s * 1000);
}

/** Render `html` only when it changed, so polling never makes images flicker. */
function renderIfChanged(key, markup) {
  if (state.lastRender === key) return false;
  state.lastRender = key;
  setHtml(view(), markup);
  return true;
}

function failPage(err, what) {
  if (err.status === 401) return;  // the sign-in page is showing and says why
  setConnection(false, 'ReID API unreachable');
  setBanner(`Cannot load ${what}: ${err.message}`);
  if (!view().querySelector('[data-page]')) {
    state.lastRender = '';
    setHtml(view(), html`<div class="error" data-error>Cannot load ${esc(what)}.<br><span class="mono">${esc(err.message)}</span><br>The page retries every ${state.config.refresh_s} s.</div>`);
  }
}

function okPage() {
  setConnection(true, 'ReID API connected');
  setBanner('');
}

async function pageIdentities(token) {
  try {
    const [ids] = await Promise.all([Api.identities(), ensureApiCameras()]);
    if (token !== state.routeToken) return;
    state.identities = ids;
    okPage();
    const cams = new Set(ids.flatMap((i) => i.cameras));
    const multi = ids.filter((i) => i.cameras.length > 1).length;
    const sightings = ids.reduce((n, i) => n + i.sightings, 0);
    const cards = ids.map((i) => html`
      <a class="card" href="#/identity/${encodeURIComponent(i.global_id)}" data-identity="${esc(i.global_id)}">
        ${thumbHtml(i.thumbnail_url, `best image of ${i.global_id}`)}
        <div class="body">
          <div class="gid">${esc(i.global_id)} ${i.cameras.length > 1 ? html`<span class="badge">${i.cameras.length} cameras</span>` : ''}</div>
          <div class="chips">${i.cameras.map((c) => html`<span class="chip c${cameraIndex(c) % 3}" title="${esc(cameraName(c))}">${esc(c)}</span>`)}</div>
          <div class="meta">first ${esc(fmtTime(i.first_seen_ns))}<br>last&nbsp; ${esc(fmtTime(i.last_seen_ns))}</div>
          <div class="meta">${i.sightings} sighting${i.sightings === 1 ? '' : 's'}</div>
        </div>
      </a>`);
    renderIfChanged(`identities:${JSON.stringify(ids)}`, html`
      <section data-page="identities">
        <div class="pagehead">
          <div><h1>Identities</h1><div class="sub">Every person seen by the network, newest first · refreshes every ${state.config.refresh_s} s</div></div>
          <div class="spacer"></div>
          <div class="stats">
            <div class="stat"><b>${ids.length}</b><span>identities</span></div>
            <div class="stat"><b>${multi}</b><span>on ≥ 2 cameras</span></div>
            <div class="stat"><b data-stat="sightings">${sightings}</b><span>sightings</span></div>
            <div class="stat"><b>${cams.size}</b><span>cameras</span></div>
          </div>
        </div>
        ${ids.length ? html`<div class="cards">${cards}</div>` : html`<div class="empty">No identities yet. They appear here as people finish walking through a camera.</div>`}
      </section>`);
  } catch (err) {
    if (token === state.routeToken) failPage(err, 'identities');
  }
  if (token === state.routeToken) schedule(() => pageIdentities(token));
}

async function pageIdentity(token, gid) {
  try {
    const [detail] = await Promise.all([Api.identityDetail(gid), ensureApiCameras()]);
    if (token !== state.routeToken) return;
    okPage();
    const s = detail.sightings;
    const cams = [...new Set(s.map((x) => x.camera_id))];
    const first = s.length ? s[0].ts_start_ns : null;
    const last = s.length ? Math.max(...s.map((x) => x.ts_end_ns)) : null;
    const rows = s.map((x, i) => html`
      <div class="sighting" data-tracklet="${esc(x.tracklet_id)}" data-camera="${esc(x.camera_id)}">
        <div class="step">${i + 1}</div>
        ${thumbHtml(x.thumbnail_url, `${gid} on ${x.camera_id}`)}
        <div>
          <div class="cam">${esc(x.camera_id)} <span class="hint">${esc(cameraName(x.camera_id) !== x.camera_id ? cameraName(x.camera_id) : '')}</span></div>
          <div class="time">${esc(fmtTime(x.ts_start_ns))} → ${esc(fmtTime(x.ts_end_ns, false))} · ${esc(fmtDuration((x.ts_end_ns - x.ts_start_ns) / NS_PER_S))}</div>
          <div class="tid mono">${esc(x.tracklet_id)}</div>
          <div class="row" style="margin-top:4px"><a class="hint" href="#/reidentify?tracklet_id=${encodeURIComponent(x.tracklet_id)}">re-identify this sighting →</a></div>
        </div>
      </div>`);
    const changed = renderIfChanged(`identity:${JSON.stringify(detail)}`, html`
      <section data-page="identity">
        <div class="pagehead">
          <div><div class="sub"><a href="#/identities">← Identities</a></div><h1>Identity <span class="mono">${esc(gid)}</span></h1></div>
          <div class="spacer"></div>
          <div class="stats">
            <div class="stat"><b>${s.length}</b><span>sightings</span></div>
            <div class="stat"><b>${cams.length}</b><span>cameras</span></div>
            <div class="stat"><b>${esc(fmtTime(first, false))}</b><span>first seen</span></div>
            <div class="stat"><b>${esc(fmtTime(last, false))}</b><span>last seen</span></div>
          </div>
          <a href="#/reidentify?global_id=${encodeURIComponent(gid)}"><button class="primary" type="button">Re-identify…</button></a>
        </div>
        ${s.length ? '' : html`<div class="empty">This identity has no stored sightings (it may have been merged into another).</div>`}
        <div class="grid2">
          <div class="stack">
            <div class="panel"><h2>Route across the camera map</h2><div id="route-map"></div>
              <div class="legend"><span>badges: sightings in time order</span><span>arrows: walks between cameras, with the arrival time and the time between views</span></div></div>
            <div class="panel"><h2>Timeline</h2><div id="route-timeline"></div></div>
          </div>
          <div class="panel"><h2>Sightings in time order</h2><div class="sightings">${rows}</div></div>
        </div>
      </section>`);
    if (changed && s.length) {
      drawMap(document.getElementById('route-map'), { links: mapLinks(), seen: new Set(cams), route: s });
      drawTimeline(document.getElementById('route-timeline'), s);
    }
    if (changed && typeof decorateIdentity === 'function') decorateIdentity(gid, s);  // operators.js
  } catch (err) {
    if (token === state.routeToken) failPage(err, `identity ${gid}`);
  }
  if (token === state.routeToken) schedule(() => pageIdentity(token, gid));
}

const STATE_LABEL = { online: 'online', offline: 'offline', connecting: 'connecting', ended: 'ended', unknown: 'unknown', 'no ingest': 'no ingest' };

async function pageCameras(token) {
  let cams = [];
  let recent = null;
  try {
    state.apiCameras = null;  // cameras change at runtime (the camera registry)
    await ensureApiCameras();
    cams = allCameras();
    recent = await Api.tracklets(RECENT_TRACKLETS);
    okPage();
  } catch (err) {
    if (token !== state.routeToken) return;
    setConnection(false, 'ReID API unreachable');
    setBanner(`Cannot load tracklets: ${err.message}`);
  }
  let status = { redis: 'unknown', error: '', cameras: {} };
  try { status = await Gallery.status(cams.map((c) => c.id)); } catch (err) { status.error = err.message; }
  if (token !== state.routeToken) return;
  const perCam = {};
  for (const t of recent || []) {
    const c = perCam[t.camera_id] || (perCam[t.camera_id] = { tracklets: 0, ids: new Set(), last: 0 });
    c.tracklets += 1; c.ids.add(t.global_id); c.last = Math.max(c.last, t.ts_end_ns);
  }
  const st = (id) => (status.cameras[id] || { state: 'unknown' });
  const rows = cams.map((c) => {
    const s = st(c.id); const a = perCam[c.id];
    const fps = s.fps_measured !== undefined ? Number(s.fps_measured).toFixed(1) : '—';
    return html`<tr data-camera="${esc(c.id)}">
      <td><b>${esc(c.id)}</b><div class="hint">${esc(c.name !== c.id ? c.name : '')}</div></td>
      <td><span class="state ${esc(s.state.replace(/\s+/g, ''))}" data-state="${esc(s.state)}"><span class="dot"></span>${esc(STATE_LABEL[s.state] || s.state)}</span>
        ${s.last_error ? html`<div class="hint" title="${esc(s.last_error)}">${esc(s.last_error.slice(0, 60))}</div>` : ''}</td>
      <td>${s.last_frame_ns && Number(s.last_frame_ns) > 0 ? esc(fmtAgo(s.last_frame_ns)) : '—'}</td>
      <td>${fps}</td>
      <td>${s.reconnects ?? '—'}</td>
      <td>${recent ? (a ? a.tracklets : 0) : '—'}</td>
      <td>${recent ? (a ? a.ids.size : 0) : '—'}</td>
      <td>${a ? esc(fmtTime(a.last)) : '—'}</td>
      <td class="mono">${c.x ?? '—'}, ${c.y ?? '—'}</td>
    </tr>`;
  });
  const redisNote = status.redis === 'up' ? '' : html`<div class="error" style="padding:10px;margin-bottom:12px;text-align:left">Live status unknown: ${esc(status.error || 'Redis cannot be read')}</div>`;
  const changed = renderIfChanged(`cameras:${JSON.stringify([cams, status, recent && recent.length, recent && recent[0]])}`, html`
    <section data-page="cameras">
      <div class="pagehead"><div><h1>Cameras</h1><div class="sub">${cams.length} camera${cams.length === 1 ? '' : 's'} · live status from the ingest stage (Redis) · tracklets and identities over the latest ${RECENT_TRACKLETS} tracklets · refreshes every ${state.config.refresh_s} s</div></div></div>
      ${redisNote}
      <div class="stack">
        <div class="panel"><h2>Camera map</h2><div id="cam-map"></div>
          <div class="legend"><span><span class="dot" style="background:#16a34a"></span> online</span><span><span class="dot" style="background:#d97706"></span> connecting</span><span><span class="dot" style="background:#dc2626"></span> offline / ended</span><span><span class="dot"></span> unknown / no ingest</span><span>dashed: walking links</span></div></div>
        <div class="panel"><h2>Status</h2>
          <table class="list"><thead><tr><th>Camera</th><th>State</th><th>Last frame</th><th>fps</th><th>Reconnects</th><th>Tracklets</th><th>Identities</th><th>Last person</th><th>Map x, y</th></tr></thead>
          <tbody>${rows.length ? rows : html`<tr><td colspan="9" class="hint">No cameras configured.</td></tr>`}</tbody></table>
        </div>
      </div>
    </section>`);
  if (changed && cams.length) {
    drawMap(document.getElementById('cam-map'), {
      links: mapLinks(), status: Object.fromEntries(cams.map((c) => [c.id, st(c.id).state])),
    });
  }
  if (token === state.routeToken) schedule(() => pageCameras(token));
}

async function pageReidentify(token, params) {
  state.lastRender = '';
  try {
    const [ids] = await Promise.all([state.identities ? state.identities : Api.identities(), ensureApiCameras()]);
    state.identities = ids;
    okPage();
  } catch (err) {
    failPage(err, 're-identify');
    if (token === state.routeToken) schedule(() => route());
    return;
  }
  if (token !== state.routeToken) return;
  const ids = state.identities;
  const cams = allCameras();
  const tMin = ids.length ? Math.min(...ids.map((i) => i.first_seen_ns)) : null;
  const tMax = ids.length ? Math.max(...ids.map((i) => i.last_seen_ns)) : null;
  const gid = params.get('global_id') || (params.get('tracklet_id') ? '' : (ids[0] && ids[0].global_id) || '');
  const tid = params.get('tracklet_id') || '';
  setHtml(view(), html`
    <section data-page="reidentify">
      <div class="pagehead"><div><h1>Re-identify</h1><div class="sub">Find who else looks like a person, within chosen cameras or a map area and a time window</div></div></div>
      <div class="grid2">
        <div class="panel">
          <form class="query" id="q">
            <fieldset><legend>Who</legend>
              <div class="row">
                <label><input type="radio" name="kind" value="identity" ${tid ? '' : 'checked'}> identity</label>
                <select name="global_id" aria-label="identity">${ids.map((i) => html`<option value="${esc(i.global_id)}" ${i.global_id === gid ? 'selected' : ''}>${esc(i.global_id)} · ${i.cameras.join(', ')} · ${fmtTime(i.first_seen_ns, false)}</option>`)}</select>
              </div>
              <div class="row" style="margin-top:8px">
                <label><input type="radio" name="kind" value="tracklet" ${tid ? 'checked' : ''}> tracklet</label>
                <input type="text" name="tracklet_id" value="${esc(tid)}" placeholder="tracklet id, e.g. cam1:…" style="flex:1" aria-label="tracklet id">
              </div>
            </fieldset>
            <fieldset><legend>Where</legend>
              <div class="camchecks">${cams.map((c) => html`<label><input type="checkbox" name="camera" value="${esc(c.id)}"> ${esc(c.id)}</label>`)}</div>
              <div class="hint" style="margin:6px 0">No camera ticked: every camera. Or drag a box on the map to pick an area (click the map to clear it; click a camera to tick it).</div>
              <div class="row">
                <label class="field">x min<input type="number" step="any" name="x0"></label>
                <label class="field">y min<input type="number" step="any" name="y0"></label>
                <label class="field">x max<input type="number" step="any" name="x1"></label>
                <label class="field">y max<input type="number" step="any" name="y1"></label>
                <button type="button" class="small" id="clear-area">clear area</button>
              </div>
            </fieldset>
            <fieldset><legend>When (UTC)</legend>
              <div class="row">
                <label class="field">from<input type="datetime-local" step="1" name="from" value="${esc(toInputTime(tMin))}"></label>
                <label class="field">to<input type="datetime-local" step="1" name="to" value="${esc(toInputTime(tMax === null ? null : tMax + NS_PER_S))}"></label>
                <label class="field">top<input type="number" name="limit" min="1" max="100" value="${DEFAULT_LIMIT}"></label>
              </div>
            </fieldset>
            <div class="row"><button class="primary" type="submit">Search</button><span class="hint" id="q-status"></span></div>
          </form>
        </div>
        <div class="panel"><h2>Map</h2><div id="q-map"></div></div>
      </div>
      <div class="panel" style="margin-top:18px"><h2>Candidates</h2><div id="q-results"><div class="hint">Ranked candidates appear here, closest first.</div></div></div>
    </section>`);
  const form = document.getElementById('q');
  const area = () => {
    const v = ['x0', 'y0', 'x1', 'y1'].map((n) => form.elements[n].value);
    return v.every((x) => x !== '') ? v.map(Number) : null;
  };
  const selected = () => new Set([...form.querySelectorAll('input[name=camera]:checked')].map((i) => i.value));
  const redraw = () => drawMap(document.getElementById('q-map'), {
    links: mapLinks(), selected: selected(), area: area(),
    onArea: (box, clickedCam) => {
      if (box) {
        ['x0', 'y0', 'x1', 'y1'].forEach((n, k) => { form.elements[n].value = box[k]; });
      } else if (clickedCam) {
        const cb = form.querySelector(`input[name=camera][value="${CSS.escape(clickedCam)}"]`);
        if (cb) cb.checked = !cb.checked;
      } else {
        ['x0', 'y0', 'x1', 'y1'].forEach((n) => { form.elements[n].value = ''; });
      }
      redraw();
    },
  });
  redraw();
  form.addEventListener('change', redraw);
  document.getElementById('clear-area').addEventListener('click', () => {
    ['x0', 'y0', 'x1', 'y1'].forEach((n) => { form.elements[n].value = ''; });
    redraw();
  });
  form.elements.tracklet_id.addEventListener('input', () => { form.elements.kind.value = 'tracklet'; });
  form.elements.global_id.addEventListener('change', () => { form.elements.kind.value = 'identity'; });
  form.addEventListener('submit', (ev) => { ev.preventDefault(); runQuery(form, area()); });
  if (params.get('run') === '1') runQuery(form, area());
}

async function runQuery(form, area) {
  const out = document.getElementById('q-results');
  const status = document.getElementById('q-status');
  const kind = form.elements.kind.value;
  const chosen = [...form.querySelectorAll('input[name=camera]:checked')].map((i) => i.value);
  const q = {
    global_id: kind === 'identity' ? form.elements.global_id.value : '',
    tracklet_id: kind === 'tracklet' ? form.elements.tracklet_id.value.trim() : '',
    cameras: chosen.length ? chosen : null,
    area,
    ts_from_ns: fromInputTime(form.elements.from.value),
    ts_to_ns: fromInputTime(form.elements.to.value),
    limit: Math.max(1, Math.min(100, Number(form.elements.limit.value) || DEFAULT_LIMIT)),
  };
  if (!q.global_id && !q.tracklet_id) { status.textContent = 'Choose an identity or enter a tracklet id.'; return; }
  status.textContent = 'searching…';
  out.setAttribute('aria-busy', 'true');
  try {
    const res = await Api.reidentify(q);
    status.textContent = `${res.candidates.length} candidate${res.candidates.length === 1 ? '' : 's'}`;
    const who = q.global_id ? `identity ${q.global_id}` : `tracklet ${q.tracklet_id}`;
    const known = q.global_id && (state.identities || []).find((i) => i.global_id === q.global_id);
    const where = [q.cameras ? `cameras ${q.cameras.join(', ')}` : 'all cameras', q.area ? `area [${q.area.join(', ')}]` : ''].filter(Boolean).join(' · ');
    const when = `${fmtTime(q.ts_from_ns)} → ${fmtTime(q.ts_to_ns)}`;
    setHtml(out, html`<div class="querybox">${known ? thumbHtml(known.thumbnail_url, who) : ''}<div><b>${esc(who)}</b><div class="hint">${esc(where)} · ${esc(when)}</div></div></div>${res.candidates.length
      ? html`<div class="results">${res.candidates.map((c, i) => html`
        <div class="cand" data-candidate="${esc(c.tracklet_id)}" data-camera="${esc(c.camera_id)}" data-start-ns="${c.ts_start_ns}" data-end-ns="${c.ts_end_ns}" data-distance="${c.distance}">
          <div class="rank">#${i + 1}</div>
          ${thumbHtml(c.thumbnail_url, `candidate ${i + 1}`)}
          <div class="who"><div><a href="#/identity/${encodeURIComponent(c.global_id)}"><b>${esc(c.global_id || '(unlinked)')}</b></a> on <b>${esc(c.camera_id)}</b></div>
            <div class="time">${esc(fmtTime(c.ts_start_ns))} → ${esc(fmtTime(c.ts_end_ns, false))}</div>
            <div class="hint mono">${esc(c.tracklet_id)}</div></div>
          <div class="dist"><span>distance <b>${c.distance.toFixed(3)}</b></span><div class="bar"><i style="width:${Math.min(100, (100 * c.distance) / MAX_DISTANCE_SHOWN).toFixed(1)}%"></i></div></div>
        </div>`)}</div>`
      : html`<div class="empty">No candidate in these cameras and this time window.</div>`}`);
    okPage();
  } catch (err) {
    status.textContent = '';
    setHtml(out, html`<div class="error" data-error>Query failed: <span class="mono">${esc(err.message)}</span></div>`);
  } finally {
    out.removeAttribute('aria-busy');
  }
}

// --------------------------------------------------------------------------------------
// router

function route() {
  clearTimeout(state.timer);
  state.routeToken += 1;
  state.lastRender = '';
  const token = state.routeToken;
  const hash = location.hash.replace(/^#\/?/, '') || 'identities';
  if (hash === 'logout') { Auth.clear(); pageLogin('Signed out.'); return; }
  if (!Auth.get()) { pageLogin(''); return; }
  const [path, query] = hash.split('?');
  const parts = path.split('/').map(decodeURIComponent);
  document.querySelectorAll('nav a').forEach((a) => {
    const page = parts[0] === 'identity' ? 'identities' : parts[0];
    a.classList.toggle('active', a.dataset.nav === page);
  });
  setHtml(view(), html`<div class="loading">Loading…</div>`);
  if (parts[0] === 'identity' && parts[1]) pageIdentity(token, parts[1]);
  else if (parts[0] === 'cameras') pageCameras(token);
  else if (parts[0] === 'reidentify') pageReidentify(token, new URLSearchParams(query || ''));
  else if (parts[0] === 'search') pageSearch(token, new URLSearchParams(query || ''));  // operators.js
  else if (parts[0] === 'registry') pageRegistry(token);  // operators.js
  else if (parts[0] === 'uploads') pageUploads(token);  // operators.js
  else if (parts[0] === 'sitemap') pageSiteMap(token);  // operators.js
  else pageIdentities(token);
}

/** The sign-in page: the token is checked by the gallery, then kept for this tab. */
function pageLogin(message) {
  clearTimeout(state.timer);
  state.routeToken += 1;
  state.lastRender = '';
  document.getElementById('who').textContent = '';
  setHtml(view(), html`
    <section data-page="login" class="login">
      <form class="panel" id="login">
        <h1>Sign in</h1>
        <p class="sub">Paste an access token. An admin creates one with
          <code>crosscam tokens create --role viewer --name you</code>; the first admin token is
          in the file the servers named when they first started.</p>
        <input type="password" name="token" autocomplete="off" spellcheck="false" aria-label="access token" required>
        <div class="row"><button class="primary" type="submit">Sign in</button></div>
        <div class="error" data-login-error ${message ? '' : html`hidden`}>${message}</div>
      </form>
    </section>`);
  const form = document.getElementById('login');
  form.addEventListener('submit', async (ev) => {
    ev.preventDefault();
    Auth.set(form.elements.token.value.trim());
    if (!location.hash.startsWith('#/') || location.hash === '#/logout') location.hash = '#/identities';
    await signedIn();
  });
}

async function signedIn() {
  try {
    state.config = await Gallery.config();
  } catch (err) {
    if (err.status === 401) return;  // back on the sign-in page, which says why
    setBanner(`The gallery server cannot be reached: ${err.message}`);
  }
  document.getElementById('who').textContent = state.config.who ? `${state.config.who.name} (${state.config.who.role})` : '';
  route();
}

async function start() {
  Auth.fromUrl();
  window.addEventListener('hashchange', route);
  if (!Auth.get()) { pageLogin(''); return; }
  await signedIn();
}

start();

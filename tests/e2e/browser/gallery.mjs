// Drives the crosscam gallery in headless Chromium and reports what a user would see.
//
// Usage: node gallery.mjs '<json plan>'
// The plan: {url, dead_url, chromium, out_dir, ready_marker, expect_sightings, reid: {cameras: [...], from: "YYYY-MM-DDTHH:MM:SS",
//            to: "...", area: [x0, y0, x1, y1]}, timeout_ms, token, bad_token, hostile_name}
// Prints one JSON object of facts (what was on each page) on stdout; the Python test
// (tests/e2e/test_gallery.py) judges them. Screenshots go to out_dir.
// Exits non-zero when a page never reaches the state it waits for.

import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const plan = JSON.parse(process.argv[2]);
const timeout = plan.timeout_ms ?? 15000;
const VIEWPORT = { width: 1440, height: 1000 };

const profile = mkdtempSync(join(tmpdir(), 'crosscam-chromium-'));
// A persistent context is how Playwright takes --user-data-dir: a new empty profile each run.
const context = await chromium.launchPersistentContext(profile, {
  executablePath: plan.chromium,
  headless: true,
  viewport: VIEWPORT,
  timezoneId: 'UTC',
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

const facts = { console_errors: [], page_errors: [] };

/** Wait until every <img> under `selector` has finished loading (or failed). */
async function imagesSettled(page, selector) {
  // images are fetched with the token and shown from blob: URLs: wait for each to get one
  await page.waitForFunction(
    (sel) => [...document.querySelectorAll(`${sel} img`)].every((i) => i.dataset.failed || (i.getAttribute('src') && i.complete)),
    selector, { timeout },
  );
  return page.$$eval(`${selector} img`, (imgs) => imgs.map((i) => ({ src: i.getAttribute('src'), width: i.naturalWidth })));
}

try {
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('console', (m) => { if (m.type() === 'error') facts.console_errors.push(m.text()); });
  page.on('pageerror', (e) => facts.page_errors.push(String(e)));

  // 0. closed by default: the sign-in page; a wrong token is refused, the right one kept
  await page.goto(`${plan.url}/#/identities`);
  await page.waitForSelector('[data-page=login] form#login');
  await page.fill('form#login input[name=token]', plan.bad_token);
  await page.click('form#login button[type=submit]');
  await page.waitForSelector('[data-page=login] [data-login-error]:not([hidden])');
  facts.login = { refused: await page.textContent('[data-login-error]') };
  await page.screenshot({ path: join(plan.out_dir, 'login.png'), fullPage: true });
  await page.fill('form#login input[name=token]', plan.token);
  await page.click('form#login button[type=submit]');

  // 1. identities
  await page.waitForSelector('[data-page=identities] .card');
  facts.login.who = await page.textContent('#who');
  facts.login.stored = await page.evaluate(() => sessionStorage.getItem('crosscam.token') !== null);
  const shownSightings = () => Number(document.querySelector('[data-stat=sightings]').textContent);
  const sightingsAtLoad = await page.evaluate(shownSightings);
  // tell the test the page is open; it links more tracklets, which the page must pick up by itself
  writeFileSync(join(plan.out_dir, plan.ready_marker), '');
  await page.waitForFunction(
    (want) => Number(document.querySelector('[data-stat=sightings]').textContent) === want,
    plan.expect_sightings, { timeout },
  );
  const cardImages = await imagesSettled(page, '.cards');
  facts.identities = {
    cards: await page.$$eval('.card', (cs) => cs.map((c) => ({
      global_id: c.dataset.identity,
      cameras: [...c.querySelectorAll('.chip')].map((x) => x.textContent.trim()),
    }))),
    images: cardImages,
    connection: await page.textContent('#conn-text'),
    sightings_at_load: sightingsAtLoad,
  };
  await page.screenshot({ path: join(plan.out_dir, 'identities.png'), fullPage: true });

  // 2. click the first identity seen on at least two cameras
  const multi = facts.identities.cards.find((c) => c.cameras.length >= 2);
  if (!multi) throw new Error('no identity card shows two cameras');
  await page.click(`.card[data-identity="${multi.global_id}"]`);
  await page.waitForSelector('[data-page=identity] .sighting');
  await page.waitForSelector('#route-map svg path.route');
  facts.identity = {
    url_hash: await page.evaluate(() => location.hash),
    global_id: multi.global_id,
    sightings: await page.$$eval('.sighting', (ss) => ss.map((s) => s.dataset.camera)),
    images: await imagesSettled(page, '.sightings'),
    route_legs: await page.$$eval('#route-map path.route', (ps) => ps.length),
    map_cameras: await page.$$eval('#route-map g.cam', (gs) => gs.map((g) => ({ id: g.dataset.camera, seen: g.classList.contains('seen') }))),
    step_labels: await page.$$eval('#route-map .stepmark text', (ts) => ts.map((t) => t.textContent)),
  };
  await page.screenshot({ path: join(plan.out_dir, 'identity.png'), fullPage: true });

  // 3. cameras
  await page.click('nav a[data-nav=cameras]');
  await page.waitForSelector('[data-page=cameras] tbody tr[data-camera]');
  await page.waitForSelector('#cam-map svg g.cam');
  facts.cameras = {
    rows: await page.$$eval('tbody tr[data-camera]', (rs) => rs.map((r) => ({
      id: r.dataset.camera,
      state: r.querySelector('[data-state]').dataset.state,
      cells: [...r.querySelectorAll('td')].map((td) => td.textContent.trim()),
    }))),
    map_cameras: await page.$$eval('#cam-map g.cam', (gs) => gs.map((g) => g.dataset.camera)),
    // hostile camera names (from the cameras file) must show as text, never run
    names: await page.$$eval('tbody tr[data-camera] td:first-child .hint', (hs) => hs.map((h) => h.textContent)),
    injected: await page.evaluate(() => document.querySelectorAll('img[src="x"], #view script, [onerror]').length),
    pwned: await page.evaluate(() => window.__pwned === true),
  };
  await page.screenshot({ path: join(plan.out_dir, 'cameras.png'), fullPage: true });

  // 4. re-identify: the clicked identity, within chosen cameras and a time window
  await page.goto(`${plan.url}/#/reidentify?global_id=${encodeURIComponent(multi.global_id)}`);
  await page.waitForSelector('form#q');
  for (const cam of plan.reid.cameras) await page.check(`input[name=camera][value="${cam}"]`);
  await page.fill('input[name=from]', plan.reid.from);
  await page.fill('input[name=to]', plan.reid.to);
  await page.click('form#q button[type=submit]');
  await page.waitForSelector('#q-results .cand, #q-results .empty, #q-results [data-error]');
  const candidates = async () => page.$$eval('#q-results .cand', (cs) => cs.map((c) => ({
    tracklet_id: c.dataset.candidate,
    camera_id: c.dataset.camera,
    ts_start_ns: Number(c.dataset.startNs),
    ts_end_ns: Number(c.dataset.endNs),
    distance: Number(c.dataset.distance),
    rank: c.querySelector('.rank').textContent.trim(),
  })));
  facts.reidentify = {
    global_id: multi.global_id,
    candidates: await candidates(),
    images: await imagesSettled(page, '#q-results'),
    error: await page.$eval('#q-results', (r) => r.querySelector('[data-error]')?.textContent ?? ''),
  };
  await page.screenshot({ path: join(plan.out_dir, 'reidentify.png'), fullPage: true });

  // 5. the same query over a map area instead of a list of cameras
  for (const cam of plan.reid.cameras) await page.uncheck(`input[name=camera][value="${cam}"]`);
  const [x0, y0, x1, y1] = plan.reid.area;
  await page.fill('input[name=x0]', String(x0));
  await page.fill('input[name=y0]', String(y0));
  await page.fill('input[name=x1]', String(x1));
  await page.fill('input[name=y1]', String(y1));
  await page.evaluate(() => { document.getElementById('q-results').replaceChildren(); });
  await page.click('form#q button[type=submit]');
  await page.waitForSelector('#q-results .cand, #q-results .empty, #q-results [data-error]');
  facts.reidentify_area = {
    candidates: await candidates(),
    images: await imagesSettled(page, '#q-results'),
    area_drawn: await page.$eval('#q-map rect.area', (r) => r.getAttribute('visibility') === 'visible'),
  };
  await page.screenshot({ path: join(plan.out_dir, 'reidentify_area.png'), fullPage: true });

  // 6. a gallery whose ReID API is down says so, and keeps serving
  if (plan.dead_url) {
    const dead = await context.newPage();
    dead.setDefaultTimeout(timeout);
    // signed in by a link carrying the token (as `crosscam demo` prints it)
    await dead.goto(`${plan.dead_url}/#token=${plan.token}`);
    await dead.waitForSelector('[data-error]');
    facts.unreachable = {
      message: await dead.textContent('[data-error]'),
      banner: await dead.textContent('#banner'),
      connection: await dead.textContent('#conn-text'),
    };
    await dead.screenshot({ path: join(plan.out_dir, 'unreachable.png'), fullPage: true });
    // its Redis is down too: the cameras still come from the cameras file, their state "unknown"
    await dead.click('nav a[data-nav=cameras]');
    await dead.waitForSelector('[data-page=cameras] tbody tr[data-camera]');
    facts.unreachable.camera_states = await dead.$$eval('tbody [data-state]', (ss) => ss.map((s) => s.dataset.state));
    facts.unreachable.cameras_note = await dead.textContent('[data-page=cameras] .error');
    await dead.screenshot({ path: join(plan.out_dir, 'unreachable_cameras.png'), fullPage: true });
  }
  facts.pwned = await page.evaluate(() => window.__pwned === true);
  process.stdout.write(JSON.stringify(facts));
} catch (err) {
  process.stdout.write(JSON.stringify({ ...facts, failed: String(err && err.stack || err) }));
  process.exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

// Drives the gallery's operator pages in headless Chromium: split a link on the identity page
// (admin), then search by photo (upload a file) and by a stored crop.
//
// Usage: node operators.mjs '<json plan>'
// The plan: {url, chromium, out_dir, token, timeout_ms, gid, split_tracklet, photo}
// Prints one JSON object of facts on stdout; tests/e2e/test_operators_gallery.py judges them.
// Screenshots of each page go to out_dir.

import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { chromium } from 'playwright-core';

const plan = JSON.parse(process.argv[2]);
const timeout = plan.timeout_ms ?? 15000;
const profile = mkdtempSync(join(tmpdir(), 'crosscam-chromium-'));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: plan.chromium,
  headless: true,
  viewport: { width: 1440, height: 1000 },
  timezoneId: 'UTC',
  args: ['--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync'],
});
const facts = { page_errors: [] };

const candidates = (page) => page.$$eval('#s-results .cand', (cs) => cs.map((c) => ({
  tracklet_id: c.dataset.candidate, camera: c.dataset.camera, distance: Number(c.dataset.distance),
})));

try {
  const page = await context.newPage();
  page.setDefaultTimeout(timeout);
  page.on('pageerror', (e) => facts.page_errors.push(String(e)));
  await page.goto(`${plan.url}/#/identities`);
  await page.fill('form#login input[name=token]', plan.token);
  await page.click('form#login button[type=submit]');
  await page.waitForSelector('[data-page=identities] .card');

  // 1. split a link: tick one sighting of the identity, split it into a new identity
  await page.goto(`${plan.url}/#/identity/${encodeURIComponent(plan.gid)}`);
  await page.waitForSelector('.corrections #split');
  facts.before = await page.$$eval('.sighting', (rows) => rows.map((r) => r.dataset.tracklet));
  await page.screenshot({ path: join(plan.out_dir, 'identity-before-split.png'), fullPage: true });
  await page.check(`.split-pick[value="${plan.split_tracklet}"]`);
  await page.click('.corrections #split');
  await page.waitForFunction((gid) => !location.hash.endsWith(encodeURIComponent(gid)), plan.gid);
  await page.waitForSelector('[data-page=identity] .sighting');
  facts.after = {
    hash: await page.evaluate(() => location.hash),
    sightings: await page.$$eval('.sighting', (rows) => rows.map((r) => r.dataset.tracklet)),
  };
  await page.screenshot({ path: join(plan.out_dir, 'identity-after-split.png'), fullPage: true });

  // 2. search by photo: upload a file
  await page.click('nav a[data-nav=search]');
  await page.waitForSelector('[data-page=search] form#s');
  await page.setInputFiles('form#s input[name=photo]', plan.photo);
  await page.click('form#s button[type=submit]');
  await page.waitForSelector('#s-results .cand');
  facts.photo = await candidates(page);
  await page.screenshot({ path: join(plan.out_dir, 'search-by-photo.png'), fullPage: true });

  // 3. search with a stored crop, from the identity page's link
  await page.goto(`${plan.url}/#/identity/${encodeURIComponent(plan.gid)}`);
  await page.waitForSelector('.sighting a[href^="#/search?thumbnail="]');
  await page.click('.sighting a[href^="#/search?thumbnail="]');
  await page.waitForSelector('[data-page=search] .querybox img');
  await page.click('form#s button[type=submit]');
  await page.waitForSelector('#s-results .cand');
  facts.crop = await candidates(page);
  await page.screenshot({ path: join(plan.out_dir, 'search-by-crop.png'), fullPage: true });

  // 4. cameras at runtime: add a camera with a video source; its ingest comes online
  if (plan.new_camera) {
    await page.click('nav a[data-nav=registry]');
    await page.waitForSelector('[data-page=registry] form#add-camera');
    facts.registry_before = await page.$$eval('tr[data-camera]', (rows) => rows.map((r) => r.dataset.camera));
    await page.fill('form#add-camera input[name=id]', plan.new_camera.id);
    await page.fill('form#add-camera input[name=name]', 'added at runtime');
    await page.fill('form#add-camera input[name=source]', plan.new_camera.source);
    await page.fill('form#add-camera input[name=x]', '400');
    await page.fill('form#add-camera input[name=y]', '0');
    await page.click('form#add-camera button[type=submit]');
    await page.waitForSelector(`tr[data-camera="${plan.new_camera.id}"]`);
    // a file source is read as fast as it decodes (~1 s for PETS here): by the page's
    // next poll its ingest may already have ended, which also means it came online
    const cameUp = (page_) => `${page_}tr[data-camera="${plan.new_camera.id}"] :is([data-state=online], [data-state=ended])`;
    const upRow = await page.waitForSelector(cameUp(''), { timeout: plan.online_timeout_ms });
    facts.came_up = await upRow.getAttribute('data-state');
    facts.registry_text = await page.textContent('[data-page=registry]');
    await page.screenshot({ path: join(plan.out_dir, 'registry-camera-online.png'), fullPage: true });
    await page.click('nav a[data-nav=cameras]');
    await page.waitForSelector(cameUp('[data-page=cameras] '));
    await page.screenshot({ path: join(plan.out_dir, 'cameras-with-runtime-camera.png'), fullPage: true });
    await page.click('nav a[data-nav=registry]');
    await page.click(`tr[data-camera="${plan.new_camera.id}"] [data-toggle]`);
    await page.waitForSelector(`tr[data-camera="${plan.new_camera.id}"][data-enabled="0"]`);
    facts.disabled = true;
  }

  // 5. upload a recorded video for a new camera; its replay's progress reaches the end
  if (plan.upload) {
    await page.click('nav a[data-nav=uploads]');
    await page.waitForSelector('[data-page=uploads] form#upload');
    await page.setInputFiles('form#upload input[name=video]', plan.upload.file);
    await page.fill('form#upload input[name=camera]', plan.upload.camera);
    await page.fill('form#upload input[name=name]', 'uploaded recording');
    await page.fill('form#upload input[name=start]', plan.upload.start);
    await page.click('form#upload button[type=submit]');
    await page.waitForSelector('tr[data-upload]');
    await page.screenshot({ path: join(plan.out_dir, 'upload-started.png'), fullPage: true });
    await page.waitForSelector('tr[data-upload][data-state=done]', { timeout: plan.online_timeout_ms });
    facts.upload = await page.$eval('tr[data-upload]', (r) => ({
      state: r.dataset.state, progress: Number(r.dataset.progress), text: r.textContent,
    }));
    await page.screenshot({ path: join(plan.out_dir, 'upload-done.png'), fullPage: true });
    // a text file named like a video is refused by probing, and says so
    await page.setInputFiles('form#upload input[name=video]', plan.upload.fake);
    await page.fill('form#upload input[name=camera]', `${plan.upload.camera}-2`);
    await page.click('form#upload button[type=submit]');
    await page.waitForFunction(() => document.querySelector('[data-upload-status]').textContent.startsWith('Refused'));
    facts.upload.refused = await page.textContent('[data-upload-status]');
  }

  // 6. site plan: upload a plan, place camera b's homography by clicking the plan; the next
  //    sighting on b is drawn as a path on the plan on its identity page
  if (plan.sitemap) {
    const sm = plan.sitemap;
    await page.click('nav a[data-nav=sitemap]');
    await page.waitForSelector('[data-page=sitemap] form#plan-form');
    await page.setInputFiles('form#plan-form input[name=plan]', sm.plan);
    await page.click('form#plan-form button[type=submit]');
    await page.waitForSelector('#plan-edit svg.plan-overlay');
    await page.selectOption('form#pairs-form select[name=camera]', sm.camera);
    await page.fill('form#pairs-form input[name=image]', sm.image);
    await page.fill('form#pairs-form input[name=plan]', '');
    const box = await (await page.$('#plan-edit svg.plan-overlay')).boundingBox();
    for (const [fx, fy] of sm.clicks) await page.mouse.click(box.x + fx * box.width, box.y + fy * box.height);
    facts.plan_points_typed = await page.inputValue('form#pairs-form input[name=plan]');
    await page.click('form#pairs-form button[type=submit]');
    await page.waitForFunction(() => (document.querySelector('[data-sitemap-status]') || {}).textContent?.includes('saved'));
    await page.screenshot({ path: join(plan.out_dir, 'sitemap.png'), fullPage: true });
    await page.goto(`${plan.url}/#/identity/${encodeURIComponent(sm.gid)}`);
    await page.waitForSelector('#plan-route svg polyline.plan-path', { state: 'attached', timeout: plan.online_timeout_ms });
    await page.waitForFunction(() => document.querySelector('#plan-route img')?.complete);
    facts.plan_route = await page.$eval('#plan-route', (p) => ({
      points: p.querySelector('polyline').getAttribute('points').trim().split(/\s+/).length,
      stops: p.querySelectorAll('circle.plan-stop').length,
    }));
    await page.screenshot({ path: join(plan.out_dir, 'identity-plan-route.png'), fullPage: true });
  }
} catch (err) {
  facts.failed = String(err && err.stack || err);
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.stdout.write(JSON.stringify(facts));
process.exit(facts.failed ? 1 : 0);

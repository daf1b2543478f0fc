// Browser tests of the faverecs pages, in Debian's headless chromium driven by
// playwright-core. `scripts/test.sh` installs both, builds target/debug/faverecs
// and runs `node --test e2e/`.
//
// The Flickr image CDN cannot be reached from test machines, so requests to
// live.staticflickr.com are answered with a 1-pixel PNG; everything else is the
// real server over real HTTP on 127.0.0.1.

import { test } from "node:test";
import assert from "node:assert/strict";
import { spawn, spawnSync } from "node:child_process";
import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import path from "node:path";
import readline from "node:readline";
import { chromium } from "playwright-core";

const root = path.resolve(import.meta.dirname, "..");
const bin = path.join(root, "target", "debug", "faverecs");
const shots = path.join(root, "target", "e2e-screenshots");
mkdirSync(shots, { recursive: true });

const PNG = Buffer.from(
  "iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8BQDwAEhQGAhKmMIQAAAABJRU5ErkJggg==",
  "base64",
);

/** Starts `faverecs <args>` and waits for "serving on URL" (and demo's "open" lines). */
function startServer(args, cwd, env = {}) {
  return new Promise((resolve, reject) => {
    const proc = spawn(bin, args, {
      cwd,
      env: { ...process.env, RUST_LOG: "warn", ...env },
      stdio: ["ignore", "pipe", "inherit"],
    });
    const lines = readline.createInterface({ input: proc.stdout });
    const found = { proc, base: null, users: [] };
    const timer = setTimeout(() => reject(new Error("server did not start in 120 s")), 120_000);
    proc.on("exit", (code) => reject(new Error(`faverecs ${args.join(" ")} exited with ${code}`)));
    lines.on("line", (line) => {
      const serving = line.match(/^serving on (http:\/\/\S+?)\/?$/);
      if (serving) found.base = serving[1];
      const open = line.match(/open http:\/\/\S+\/users\/(\S+)$/);
      if (open) found.users.push(open[1]);
      const needUsers = args[0] === "demo" ? 1 : 0;
      if (found.base && found.users.length >= needUsers) {
        clearTimeout(timer);
        resolve(found);
      }
    });
  });
}

function run(args, cwd) {
  const r = spawnSync(bin, args, { cwd, env: { ...process.env, RUST_LOG: "warn" }, encoding: "utf8" });
  assert.equal(r.status, 0, `faverecs ${args.join(" ")}: ${r.stderr}`);
  return r.stdout;
}

async function openBrowser() {
  const browser = await chromium.launch({
    executablePath: "/usr/bin/chromium",
    args: [
      "--no-sandbox",
      "--disable-gpu",
      "--disable-quic",
      "--no-first-run",
      "--disable-background-networking",
      "--disable-component-update",
      "--disable-sync",
    ],
  });
  const page = await browser.newPage({ viewport: { width: 1100, height: 900 } });
  const errors = [];
  page.on("console", (m) => {
    if (m.type() === "error") errors.push(m.text());
  });
  page.on("pageerror", (e) => errors.push(String(e)));
  await page.route("https://live.staticflickr.com/**", (r) =>
    r.fulfill({ status: 200, contentType: "image/png", body: PNG }),
  );
  return { browser, page, errors };
}

test("a visitor searches, browses the grid, wanders through similar photos and compares", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "faverecs-e2e-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const server = await startServer(["demo", "--addr", "127.0.0.1:0"], dir, {
    FAVERECS__DEMO__USERS: "800",
    FAVERECS__DEMO__TRACKED_USERS: "5",
  });
  t.after(() => server.proc.kill("SIGTERM"));
  const { browser, page, errors } = await openBrowser();
  t.after(() => browser.close());
  const nsid = server.users[0];

  // Home: paste a Flickr photostream URL into the search box.
  await page.goto(`${server.base}/`);
  await page.fill("input[name=q]", `https://www.flickr.com/photos/${nsid}/`);
  await Promise.all([page.waitForURL(`**/users/${nsid}`), page.click("button[type=submit]")]);
  const cards = await page.locator("ul.grid li.card").count();
  assert.ok(cards > 0, "the user page shows a grid of recommended photos");
  assert.match(await page.locator("p.why").first().innerText(), /Favourited by .+ whose tastes match yours/);
  await page.screenshot({ path: path.join(shots, "1-user.png"), fullPage: true });

  // Open a recommended photo's page, then a similar photo's page.
  await Promise.all([page.waitForURL("**/photos/*"), page.locator("a.more").first().click()]);
  const first = page.url();
  const similar = page.locator("a.similar");
  assert.ok((await similar.count()) > 0, "the photo page lists similar photos");
  await page.screenshot({ path: path.join(shots, "2-photo.png"), fullPage: true });
  await Promise.all([page.waitForURL((u) => u.toString() !== first && /\/photos\/\d+$/.test(u.pathname)), similar.first().click()]);
  assert.ok((await page.locator("h2", { hasText: "Similar photos" }).count()) === 1);
  await page.screenshot({ path: path.join(shots, "3-similar.png"), fullPage: true });

  // From the photo's tags to the tag's most favourited photos, and back to a photo.
  const tag = page.locator("p.tags a").first();
  assert.ok((await tag.count()) === 1, "the photo page links its tags");
  await Promise.all([page.waitForURL("**/tags/*"), tag.click()]);
  assert.ok((await page.locator("ul.grid li.card").count()) > 0, "the tag page shows photos");
  await page.screenshot({ path: path.join(shots, "8-tag.png"), fullPage: true });
  await Promise.all([page.waitForURL("**/photos/*"), page.locator("a.similar").first().click()]);

  // Back on the user page, the Compare tab.
  await page.goto(`${server.base}/users/${nsid}`);
  await Promise.all([page.waitForURL("**/compare"), page.click("nav.tabs >> text=Compare")]);
  const headings = await page.locator("section.column h2").allInnerTexts();
  assert.deepEqual(
    headings,
    ["flexplore · photos", "itemknn · photos", "popular · photos", "explore · photos", "flexplore · photographers"],
    "every algorithm side by side",
  );
  await page.screenshot({ path: path.join(shots, "4-compare.png"), fullPage: true });

  // Another algorithm's grid, from the switcher on the user page.
  await page.goto(`${server.base}/users/${nsid}`);
  await Promise.all([page.waitForURL("**algorithm=itemknn"), page.click("nav.algorithms >> text=itemknn")]);
  assert.match(await page.locator("p.why").first().innerText(), /Similar to photos you favourited/);

  // The runs page charts the demo run's offline evaluation.
  await page.goto(`${server.base}/runs`);
  const bars = page.locator("figure.chart svg rect");
  assert.equal(await bars.count(), 12, "4 algorithms x 3 cut-offs");
  assert.ok(await page.locator("figure.chart").isVisible());
  await page.screenshot({ path: path.join(shots, "7-runs.png"), fullPage: true });

  // Phone-sized viewport: the grid reflows to two columns.
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(`${server.base}/users/${nsid}`);
  const columns = await page.locator("ul.grid").evaluate((el) => getComputedStyle(el).gridTemplateColumns.split(" ").length);
  assert.equal(columns, 2);
  await page.screenshot({ path: path.join(shots, "5-phone.png"), fullPage: true });

  assert.deepEqual(errors, [], "no console errors");
});

test("hostile titles and names render as inert text", async (t) => {
  const dir = mkdtempSync(path.join(tmpdir(), "faverecs-xss-"));
  t.after(() => rmSync(dir, { recursive: true, force: true }));
  const title = `<script>alert('xss-title')</script>`;
  const owner = `<img src=x onerror=alert('xss-owner')>`;
  writeFileSync(
    path.join(dir, "favorites.csv"),
    [
      "user_id,photo_id,owner_id",
      "1@N01,10,2@N01", "1@N01,11,3@N01",
      "2@N01,11,3@N01", "2@N01,21,3@N01", "2@N01,30,4@N01",
      "3@N01,10,2@N01", "3@N01,11,3@N01", "3@N01,20,2@N01", "3@N01,30,4@N01", "3@N01,40,1@N01",
      "4@N01,10,2@N01",
    ].join("\n") + "\n",
  );
  writeFileSync(path.join(dir, "tracked.csv"), "user_id\n1@N01\n");
  writeFileSync(
    path.join(dir, "photos.csv"),
    `photo_id,owner_id,owner_name,title,server,secret\n30,4@N01,"${owner}","${title}",65535,0a0e8bf24c\n20,2@N01,"${owner}","${title}",,\n`,
  );
  run(["import", "favorites", "favorites.csv"], dir);
  run(["import", "tracked", "tracked.csv"], dir);
  run(["import", "photos", "photos.csv"], dir);
  run(["score"], dir);
  run(["publish"], dir);
  const server = await startServer(["serve", "--addr", "127.0.0.1:0"], dir);
  t.after(() => server.proc.kill("SIGTERM"));
  const { browser, page, errors } = await openBrowser();
  t.after(() => browser.close());
  const dialogs = [];
  page.on("dialog", async (d) => {
    dialogs.push(d.message());
    await d.dismiss();
  });

  for (const url of ["/users/1@N01", "/photos/30", "/users/1@N01/compare"]) {
    await page.goto(`${server.base}${url}`);
    await page.waitForLoadState("load");
    const text = await page.locator("main").innerText();
    assert.ok(text.includes(title), `${url}: the title is visible as text`);
  }
  await page.goto(`${server.base}/users/1@N01`);
  assert.ok((await page.locator("main").innerText()).includes(owner), "the owner name is visible as text");
  assert.equal(await page.locator("main script").count(), 0, "no script element came from the data");
  assert.equal(await page.locator("main img[src=x]").count(), 0, "no img element came from the data");
  await page.screenshot({ path: path.join(shots, "6-xss.png"), fullPage: true });
  assert.deepEqual(dialogs, [], "no dialog fired");
  assert.deepEqual(errors, [], "no console errors");
});

// Browser test of fleetpoll's status page in headless Chromium (playwright-core,
// /usr/bin/chromium). Run by `cargo test --test web_page`, which starts the daemon and
// the simulator and passes:
//   FLEETPOLL_URL     the page's URL (the daemon's root, or an embedder's prefix)
//   FLEETPOLL_MODE    "daemon" (every check) or "prefix" (the page under a path prefix)
//   FLEETPOLL_TOKEN   the API token the daemon requires (daemon mode)
//   FLEETPOLL_FAILING the id of a remote the simulator makes fail
//   FLEETPOLL_SCREENSHOTS  a directory for the 1280x800 and 390x844 screenshots (optional)
// Prints one line per check; exits non-zero on the first failure.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync, mkdirSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = process.env.FLEETPOLL_URL;
const mode = process.env.FLEETPOLL_MODE || "daemon";
const token = process.env.FLEETPOLL_TOKEN || "";
const failing = process.env.FLEETPOLL_FAILING || "";
const shots = process.env.FLEETPOLL_SCREENSHOTS || "";
if (!url) throw new Error("FLEETPOLL_URL is not set");

const root = url.endsWith("/") ? url : url + "/";
const api = (path) => new URL(path, root).href;
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
function check(cond, what) {
  if (!cond) throw new Error("FAILED: " + what);
  console.log("ok - " + what);
}
// What the last condition looked at, for the failure message.
let seen = "";
async function until(what, limitMs, fn) {
  seen = "";
  const deadline = Date.now() + limitMs;
  let last;
  while (Date.now() < deadline) {
    last = await fn();
    if (last) { console.log("ok - " + what); return last; }
    await sleep(500);
  }
  throw new Error("FAILED (timed out after " + limitMs + " ms): " + what + (seen ? " (last seen: " + seen + ")" : ""));
}

const profile = mkdtempSync(join(tmpdir(), "fleetpoll-chromium-"));
// A fresh profile directory (Playwright passes it as --user-data-dir).
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 800 },
});
const problems = [];
let exitCode = 0;
try {
  const page = context.pages()[0] || (await context.newPage());
  page.on("console", (m) => { if (m.type() === "error") problems.push("console: " + m.text()); });
  page.on("pageerror", (e) => problems.push("page error: " + e.message));
  page.on("requestfailed", (r) => {
    // A live stream closed by a navigation is not a failure.
    if (!r.url().includes("/api/v1/live")) problems.push("request failed: " + r.url() + " " + r.failure().errorText);
  });
  page.on("response", (r) => { if (r.status() >= 400) problems.push("HTTP " + r.status() + " " + r.url()); });
  const getJson = async (path) => (await page.request.get(api(path))).json();
  const postCollect = async (remote) => page.request.post(api("api/v1/collect"), {
    headers: { "Content-Type": "application/json", ...(token ? { Authorization: "Bearer " + token } : {}) },
    data: { remote, wait: true },
  });

  // ---- overview
  const first = await page.goto(url);
  check(new URL(page.url()).pathname.endsWith("/"), "the overview's URL ends in / (" + page.url() + ")");
  check(first.headers()["content-encoding"] === "gzip", "the page arrives gzip-compressed");
  await page.waitForSelector("#remotes tbody tr");
  const apiRemotes = (await getJson("api/v1/remotes")).remotes;
  const rows = await page.$$eval("#remotes tbody tr", (trs) => trs.map((tr) => [tr.dataset.remote, tr.dataset.state]));
  check(JSON.stringify(rows.map((r) => r[0]).sort()) === JSON.stringify(apiRemotes.map((r) => r.remote).sort()),
    "the overview lists exactly the API's remotes (" + rows.length + ")");
  // States move on while we look: compare with a fresh read until both agree.
  await until("each remote shows the API's state", 30000, async () => {
    const fresh = Object.fromEntries((await getJson("api/v1/remotes")).remotes.map((r) => [r.remote, r.state]));
    const shown = await page.$$eval("#remotes tbody tr", (trs) => trs.map((tr) => [tr.dataset.remote, tr.dataset.state]));
    return shown.every(([id, st]) => fresh[id] === st);
  });

  if (mode === "daemon") {
    const cls = await until("the failing remote " + failing + " has an error class in the API", 60000, async () => {
      const r = (await getJson("api/v1/remotes/" + failing));
      return r.last_error_class;
    });
    await until("the overview shows " + failing + "'s error class " + cls, 30000, async () =>
      (await page.$eval('#remotes tr[data-remote="' + failing + '"] .errclass', (e) => e.textContent).catch(() => "")) === cls);

    // Filter by state with the keyboard.
    await page.focus("#state-filter");
    await page.selectOption("#state-filter", "ok");
    const visible = await page.$$eval("#remotes tbody tr:not([hidden])", (trs) => trs.map((t) => t.dataset.state));
    check(visible.length > 0 && visible.every((s) => s === "ok"), "the state filter shows only ok remotes");
    await page.selectOption("#state-filter", "");
    await page.fill("#text-filter", failing);
    const byText = await page.$$eval("#remotes tbody tr:not([hidden])", (trs) => trs.map((t) => t.dataset.remote));
    check(byText.length === 1 && byText[0] === failing, "the text filter finds " + failing);
    await page.fill("#text-filter", "");
    const order = () => page.$$eval("#remotes tbody tr", (trs) => trs.map((t) => t.dataset.remote));
    await page.click('th button[data-sort="failures"]');
    const byFailures = await page.$$eval('#remotes tbody td[data-key="failures"]', (tds) => tds.map((t) => Number(t.dataset.v)));
    check(byFailures.every((v, i) => i === 0 || byFailures[i - 1] <= v), "the Failures column sorts ascending as numbers");
    await page.click('th button[data-sort="remote"]');
    const asc = await order();
    await page.keyboard.press("Enter"); // the focused heading button, again
    const desc = await order();
    check(JSON.stringify(asc) === JSON.stringify([...asc].sort()) && JSON.stringify(desc) === JSON.stringify([...asc].reverse()),
      "a heading sorts ascending, pressing it again (keyboard) descending");
  }
  if (mode === "daemon") {
    // Health as the API has it; the failing remote is an error.
    await until("the overview shows each remote's health as the API does", 30000, async () => {
      const fresh = Object.fromEntries((await getJson("api/v1/remotes")).remotes.map((r) => [r.remote, r.health]));
      const shown = await page.$$eval("#remotes tbody tr", (trs) => trs.map((tr) => [tr.dataset.remote, tr.dataset.health]));
      seen = JSON.stringify(shown);
      return shown.every(([id, h]) => fresh[id] === h) &&
        shown.some(([id, h]) => id === failing && h === "error") &&
        (await page.$eval('#remotes tr[data-remote="' + failing + '"] td[data-key="health"] .badge', (b) => b.textContent).catch(() => "")) === "error";
    });
    // The top guests carry the names of the resource list.
    const names = Object.fromEntries((await getJson("api/v1/resources")).resources.map((r) => [r.remote + " " + r.id, r.name]));
    await until("the top guests show their names from api/v1/resources", 60000, async () => {
      const shown = await page.$$eval("#top li", (lis) => lis.map((li) => [li.querySelector("a").textContent.trim(), li.querySelector(".res-name")?.textContent || ""]));
      seen = JSON.stringify(shown.slice(0, 3));
      const guests = shown.filter(([key]) => / (qemu|lxc)\//.test(key));
      if (guests.length && guests.every(([key, name]) => names[key] && names[key] === name)) return true;
      await page.reload();
      await page.waitForSelector("#remotes tbody tr");
      return false;
    });
  }
  if (shots) {
    mkdirSync(shots, { recursive: true });
    await page.screenshot({ path: join(shots, "overview-1280.png"), fullPage: false });
  }

  // ---- remote page, reached by its link
  await page.click('#remotes a[href*="remote?id=pve-1"]');
  await page.waitForSelector("dl.status");
  check(new URL(page.url()).pathname.endsWith("/ui/remote"), "the remote link leads to the remote page (" + page.url() + ")");
  const entities = await page.$$eval("table.entities tr[data-entity]", (trs) => trs.map((t) => t.dataset.entity));
  check(entities.includes("node/pve-1-n1") && entities.some((e) => e.startsWith("qemu/")), "the remote page lists nodes and guests (" + entities.length + ")");
  check(await page.$$eval("table.entities svg.spark path", (p) => p.length) > 0, "entities have trend lines");
  if (mode === "daemon") {
    // Guest names from the resource list next to their ids, with running or stopped.
    const guests = (await getJson("api/v1/resources?remote=pve-1")).resources
      .filter((r) => (r.type === "qemu" || r.type === "lxc") && entities.includes(r.id));
    check(guests.length > 0 && guests.every((g) => g.name), "api/v1/resources names pve-1's guests (" + guests.length + ")");
    const guest = guests.find((g) => g.status === "running") || guests[0];
    await until("the remote page shows " + guest.id + " as " + guest.name + ", " + guest.status, 30000, async () => {
      const cell = await page.$('table.entities tr[data-entity="' + guest.id + '"] td');
      seen = cell ? (await cell.textContent()).trim() : "";
      if (seen.includes(guest.name) && seen.includes(guest.status)) return true;
      await page.reload();
      await page.waitForSelector("dl.status");
      return false;
    });
    const shownStates = await page.$$eval("table.entities tr[data-status]", (trs) => trs.map((t) => [t.dataset.entity, t.dataset.status]));
    const apiStates = Object.fromEntries(guests.map((g) => [g.id, g.status]));
    check(shownStates.filter(([id]) => id in apiStates).every(([id, st]) => apiStates[id] === st),
      "every guest's running state on the page is the API's");
    check((await page.$eval("dl.status", (d) => d.dataset.health)) === "good", "the remote page shows pve-1's health: good");
  }

  if (mode === "daemon") {
    // Collect now: the page asks for the token once, keeps it for the session.
    const before = Number(await page.$eval("dd.last-success", (d) => d.dataset.v));
    await sleep(1100); // a second passes, so a new collection's time differs
    await page.click("button.collect");
    await page.waitForSelector("#token-dialog[open]");
    check(true, "collect now asks for the API token");
    await page.fill("#token-input", token);
    await page.click("#token-ok");
    await until("collect now reports what it stored", 60000, async () =>
      /stored \d+ points/.test(seen = await page.$eval(".collect-result", (o) => o.textContent)));
    await until("collect now updates the remote's last success", 15000, async () =>
      Number(await page.$eval("dd.last-success", (d) => d.dataset.v)) > before);
    check(await page.evaluate(() => sessionStorage.getItem("fleetpoll.token")) === token, "the token is kept in sessionStorage");
    check(await page.evaluate(() => localStorage.getItem("fleetpoll.token")) === null, "the token is not kept in localStorage");
    await page.click("button.collect");
    await until("a second collect needs no second prompt", 60000, async () =>
      !(await page.$("#token-dialog[open]")) && /stored \d+ points/.test(seen = await page.$eval(".collect-result", (o) => o.textContent)));
  }
  if (shots) await page.screenshot({ path: join(shots, "remote-1280.png") });

  // ---- entity charts
  await page.click('table.entities a[href*="entity=node%2Fpve-1-n1"]');
  await page.waitForSelector("#charts svg.chart");
  const cpuPoints = () => page.$$eval('figure[data-chart="CPU"] g.series[data-name="cpu_current"] circle.pt', (c) => c.length);
  const apiPoints = async (timeframe) => {
    const v = await getJson("api/v1/rrd/pve-1/node/pve-1-n1?timeframe=" + timeframe + "&cf=AVERAGE&metrics=cpu_current");
    return v.data.metrics[0].values.filter((x) => x !== null).length;
  };
  const timeframe = await page.$eval("#charts", (c) => c.dataset.timeframe);
  check(timeframe === "day", "the first visit shows the day");
  // The simulator's history is half an hour: the hour view has points at once.
  await page.click('button[data-timeframe="hour"]');
  await page.waitForFunction(() => document.querySelector("#charts").dataset.timeframe === "hour");
  // A collection may land between the two reads: read again (page and API) until they agree.
  await until("the CPU chart draws as many points as the API has stored", 30000, async () => {
    const a = await apiPoints("hour");
    const drawn = await cpuPoints();
    seen = "api " + a + ", drawn " + drawn;
    if (drawn > 0 && drawn === a) return true;
    await page.reload();
    await page.waitForSelector("#charts svg.chart");
    return false;
  });
  const labels = () => page.$$eval('figure[data-chart="CPU"] text.xlabel', (t) => t.map((x) => x.textContent).join(" "));
  const hourLabels = await labels();
  await page.click('button[data-timeframe="week"]');
  await until("switching to the week changes the time axis", 10000, async () =>
    (await page.$eval("#charts", (c) => c.dataset.timeframe)) === "week" && (seen = await labels()) !== hourLabels);
  await page.reload();
  await until("the chosen timeframe is remembered across visits", 10000, async () =>
    (await page.$eval("#charts", (c) => c.dataset.timeframe)) === "week" &&
    (await page.$eval('button[data-timeframe="week"]', (b) => b.getAttribute("aria-pressed"))) === "true");
  await page.click('button[data-timeframe="hour"]');
  await page.click('button[data-cf="MAX"]');
  await until("the hour's MAX view draws", 10000, async () => (await page.$eval("#charts", (c) => c.dataset.cf)) === "MAX" && (await cpuPoints()) > 0);
  await page.click('button[data-cf="AVERAGE"]');
  await until("the hour view follows the live stream", 10000, async () =>
    (await page.$eval("#live-state", (s) => s.textContent)) === "live");
  await until("the hour chart has drawn points", 10000, async () => (await cpuPoints()) > 0);
  // Hover shows a value and a time.
  // Over the newest drawn point (the current minute's row is not complete yet); a live
  // redraw may replace the chart under the mouse, so move again until the tip shows.
  await until("hovering the chart shows the time and value", 15000, async () => {
    const [x, y] = await page.$eval('figure[data-chart="CPU"] g.series[data-name="cpu_current"] circle.pt:last-of-type',
      (c) => { const b = c.getBoundingClientRect(); return [b.x + b.width / 2, b.y + b.height / 2]; });
    await page.mouse.move(x - 3, y);
    await page.mouse.move(x, y);
    seen = await page.$eval("#tooltip", (t) => (t.hidden ? "" : t.textContent.replace(/\n/g, " | ")));
    return /UTC/.test(seen) && /cpu_current: \d/.test(seen);
  });
  console.log("   tooltip: " + seen);
  if (shots) await page.screenshot({ path: join(shots, "entity-1280.png") });

  if (mode === "daemon") {
    const start = await cpuPoints();
    await until("the live hour chart gains a point after a collection (from " + start + ")", 180000, async () => {
      await postCollect("pve-1");
      for (let i = 0; i < 10; i++) {
        if ((await cpuPoints()) > start) return true;
        await sleep(1000);
      }
      return false;
    });
  }

  if (mode === "daemon") {
    // ---- tasks: a running task, then its end.
    await page.goto(api("ui/tasks"));
    // The running tasks that started last (the list is newest first): most likely short.
    const running = await until("the tasks page shows a running task", 120000, async () => {
      const ids = await page.$$eval("#running-tasks tr[data-upid]", (trs) => trs.slice(0, 10).map((t) => t.dataset.upid));
      return ids.length ? ids : null;
    });
    // Track them, as the manager does with the tasks it starts: polled every 10 s.
    for (const upid of running) {
      const r = await page.request.post(api("api/v1/tasks/track"), {
        headers: { "Content-Type": "application/json", Authorization: "Bearer " + token }, data: { upid },
      });
      check(r.ok(), "tracking " + upid);
    }
    await until("tracked tasks are highlighted", 30000, async () => (await page.$$("#running-tasks tr.tracked")).length > 0
      || (await page.$$("#recent-tasks tr.tracked")).length > 0);
    if (shots) await page.screenshot({ path: join(shots, "tasks-1280.png") });
    await until("the tasks page shows the end of one of them", 300000, async () =>
      page.$$eval("#recent-tasks tr[data-upid]", (trs, ids) =>
        trs.some((t) => ids.includes(t.dataset.upid) && t.dataset.status !== "running"), running));
    await page.selectOption('select[name="remote"]', "pve-1");
    await page.click('form.filters button[type="submit"]');
    await page.waitForURL(/remote=pve-1/);
    await page.waitForLoadState("load");
    const shownRemotes = await page.$$eval("tr[data-remote]", (trs) => [...new Set(trs.map((t) => t.dataset.remote))]);
    check(shownRemotes.length === 1 && shownRemotes[0] === "pve-1", "the remote filter shows only pve-1's tasks (" + shownRemotes + ", " + page.url() + ")");
    await page.goto(api("ui/engine"));
    check(await page.$$eval("ul.tree li[data-actor]", (l) => l.length) > 3, "the engine page shows the supervision tree");
    check((await page.textContent("#limiter-in-use")).includes("/"), "the engine page shows the rate limiter's use");
  }

  // ---- a phone's width
  await page.setViewportSize({ width: 390, height: 844 });
  await page.goto(url);
  await page.waitForSelector("#remotes tbody tr");
  const overflow = await page.evaluate(() => document.documentElement.scrollWidth - window.innerWidth);
  check(overflow <= 1, "at 390 px the overview needs no sideways scrolling of the page (" + overflow + ")");
  if (shots) {
    await page.screenshot({ path: join(shots, "overview-390.png") });
    await page.goto(api("ui/entity?remote=pve-1&entity=node%2Fpve-1-n1"));
    await page.waitForSelector("#charts svg.chart");
    await page.screenshot({ path: join(shots, "entity-390.png") });
  }

  check(problems.length === 0, "no console errors, page errors or failed requests" + (problems.length ? ":\n  " + problems.join("\n  ") : ""));
} catch (e) {
  console.error(e.message || e);
  if (problems.length) console.error("also seen:\n  " + problems.join("\n  "));
  exitCode = 1;
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}
process.exit(exitCode);

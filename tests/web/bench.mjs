// The browser half of `fleetpoll-bench ui`: opens FLEETPOLL_URL in headless Chromium
// (a fresh profile, nothing cached) and prints one JSON line: the bytes received for the
// overview with its script and style sheet (encoded, as sent: gzip), the same uncompressed,
// and the milliseconds from navigation start until the remote list has its rows.
import { chromium } from "playwright-core";
import { mkdtempSync, rmSync } from "node:fs";
import { tmpdir } from "node:os";
import { join } from "node:path";

const url = process.env.FLEETPOLL_URL;
const profile = mkdtempSync(join(tmpdir(), "fleetpoll-chromium-"));
const context = await chromium.launchPersistentContext(profile, {
  executablePath: "/usr/bin/chromium",
  headless: true,
  args: ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync"],
  viewport: { width: 1280, height: 800 },
});
try {
  const page = context.pages()[0] || (await context.newPage());
  const responses = [];
  page.on("response", (r) => responses.push(r));
  await page.goto(url, { waitUntil: "commit" });
  await page.waitForSelector("#remotes tbody tr");
  const ready = await page.evaluate(() => performance.now());
  await page.waitForLoadState("load");
  let encoded = 0, decoded = 0;
  for (const r of responses) {
    const sizes = await r.request().sizes();
    encoded += sizes.responseBodySize + sizes.responseHeadersSize;
    decoded += (await r.body().catch(() => Buffer.alloc(0))).length;
  }
  console.log(JSON.stringify({
    overview_bytes: encoded,
    overview_uncompressed_bytes: decoded,
    browser_ready_ms: Math.round(ready),
    responses: responses.length,
  }));
} finally {
  await context.close();
  rmSync(profile, { recursive: true, force: true });
}

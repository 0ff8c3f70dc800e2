// Open the example page in headless Chromium, wait for the relevance, save a screenshot and print the result as JSON.
//
//   node screenshot.mjs URL OUT.png        (CHROMIUM=/path/to/chromium to choose the browser; default: system one)
import { existsSync } from 'node:fs';
import { chromium } from 'playwright-core';

const [url, png] = process.argv.slice(2);
const executablePath = process.env.CHROMIUM ??
  ['/usr/bin/chromium', '/usr/bin/chromium-browser', '/usr/bin/google-chrome'].find(existsSync);
const browser = await chromium.launch({ executablePath, args: ['--no-sandbox'] });
try {
  const page = await browser.newPage({ viewport: { width: 1140, height: 200 } });
  const logs = [];
  page.on('console', (m) => logs.push(`${m.type()}: ${m.text()}`));
  page.on('pageerror', (e) => logs.push(`pageerror: ${e.message}`));
  await page.goto(url);
  await page.waitForFunction(() => window.result !== undefined, null, { timeout: 30000 });
  const result = await page.evaluate(() => window.result);
  if (png) await page.screenshot({ path: png, fullPage: true });
  console.log(JSON.stringify({ ...result, browser: browser.version(), logs }));
} finally {
  await browser.close();
}

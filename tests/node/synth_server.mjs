// A dsv4 serve process on a random-weight synthetic model (dsv4 synth --preset tiny) for the
// API tests: written to a temporary directory, started on a free port, stopped with SIGTERM
// (which must exit 0) and cleaned up.
import assert from 'node:assert/strict';
import { spawn, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';

export const binary = process.env.DSV4_BINARY ?? new URL('../../build/dsv4', import.meta.url).pathname;

// args: dsv4 serve's flags beyond the model and the port. Resolves once the server listens.
export async function startSynthServer(name, args) {
  const dir = mkdtempSync(join(tmpdir(), `dsv4-${name}-`));
  execFileSync(binary, ['synth', '-o', join(dir, 'model'), '--preset', 'tiny', '--seed', '3'], { stdio: 'ignore' });
  const server = spawn(binary, ['serve', '-m', join(dir, 'model'), '--port', '0', ...args], { stdio: ['ignore', 'ignore', 'pipe'] });
  const base = await new Promise((resolve, reject) => {
    let err = '';
    server.stderr.on('data', (d) => {
      err += d;
      const m = err.match(/on http:\/\/127\.0\.0\.1:(\d+)/);
      if (m) resolve(`http://127.0.0.1:${m[1]}`);
    });
    server.on('exit', (code) => reject(new Error(`server exited with ${code}: ${err}`)));
  });
  return { dir, server, base };
}

export async function stopSynthServer(s) {
  if (!s) return;
  if (s.server.exitCode === null) {
    const exited = new Promise((resolve) => s.server.on('exit', resolve));
    s.server.kill('SIGTERM');
    assert.equal(await exited, 0);
  }
  rmSync(s.dir, { recursive: true, force: true });
}

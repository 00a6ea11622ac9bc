// Starts the real `pgforce sim` binary on a free loopback port and returns its
// URL, so jsforce talks to the simulator exactly as it would to an org.
'use strict';
const { spawn } = require('node:child_process');
const path = require('node:path');
const fs = require('node:fs');
const os = require('node:os');

const BIN = process.env.PGFORCE_BIN || path.resolve(__dirname, '../../bin/pgforce');

const creds = {
  clientId: 'conformance-client',
  clientSecret: 'conformance-secret',
  username: 'jsforce@pgforce.dev',
  password: 'conformance-pass',
};

// The schema gives Account an external id field so upsert can be exercised.
const schema = {
  objects: [
    {
      name: 'Account',
      fields: [{ name: 'External_Id__c', type: 'string', length: 40, externalId: true, unique: true }],
    },
  ],
};

async function startSim(extraArgs = []) {
  if (!fs.existsSync(BIN)) {
    throw new Error(`${BIN} is missing: run 'make build' first (make test does it)`);
  }
  const dir = fs.mkdtempSync(path.join(os.tmpdir(), 'pgforce-conformance-'));
  const schemaFile = path.join(dir, 'schema.json');
  fs.writeFileSync(schemaFile, JSON.stringify(schema));
  const child = spawn(BIN, [
    'sim', '--listen', '127.0.0.1:0',
    '--client-id', creds.clientId, '--client-secret', creds.clientSecret,
    '--username', creds.username, '--password', creds.password,
    '--schema', schemaFile, ...extraArgs,
  ], { stdio: ['ignore', 'pipe', 'pipe'] });
  let out = '';
  let err = '';
  child.stderr.on('data', (d) => { err += d; });
  const url = await new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`pgforce sim printed no URL within 10s; stdout: ${out} stderr: ${err}`)), 10000);
    child.stdout.on('data', (d) => {
      out += d;
      const m = out.match(/http:\/\/127\.0\.0\.1:\d+/);
      if (m) { clearTimeout(timer); resolve(m[0]); }
    });
    child.on('exit', (code) => { clearTimeout(timer); reject(new Error(`pgforce sim exited with ${code}: ${err}`)); });
  });
  child.removeAllListeners('exit');
  // The refresh-token line follows the URL; wait for it briefly.
  const refreshDeadline = Date.now() + 5000;
  while (!/refresh token:\s*(\S+)/.test(out) && Date.now() < refreshDeadline) {
    await new Promise((resolve) => setTimeout(resolve, 20));
  }
  const refresh = out.match(/refresh token:\s*(\S+)/);
  return {
    url,
    refreshToken: refresh ? refresh[1] : undefined,
    async stop() {
      const exited = new Promise((resolve) => child.once('exit', resolve));
      child.kill('SIGTERM');
      await exited;
      fs.rmSync(dir, { recursive: true, force: true });
    },
  };
}

module.exports = { startSim, creds };

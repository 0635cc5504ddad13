import { issueApiKey, ROLES, type ApiKeyInfo } from '../core/api-keys.ts';
import { loadConfig } from '../core/config.ts';
import { ERR, VigilError } from '../core/errors.ts';
import { parse, UsageError } from './args.ts';
import { requestService } from './service-file.ts';
import { viaServiceOrStore } from './store.ts';

export const KEYS_USAGE = `usage: vigil keys create --role ${ROLES.join('|')} [--name NAME] [--json]
       vigil keys list [--json]
       vigil keys revoke <id>

API keys for the REST/WebSocket API (VIGIL_AUTH). Roles: viewer (read findings, alerts, rules),
analyst (also SQL), admin (also change rules, manage keys). \`create\` prints the key once, on stdout
(details on stderr): only its SHA-256 is stored. The name (default: the role) tells keys apart. Works on the configured store (CLICKHOUSE_URL, else the
embedded store in VIGIL_DATA_DIR) — through the running \`vigil run\` / \`vigil api\` when it holds that
store. A revocation is effective at once in the process it went through, and within 5 s in others.`;

export async function keysCommand(argv: string[]): Promise<number> {
  const { values, positionals } = parse(argv, {
    name: { type: 'string' },
    role: { type: 'string' },
    json: { type: 'boolean', default: false },
    help: { type: 'boolean', short: 'h' },
  });
  const [action, ...rest] = positionals;
  if (values.help || action === undefined) {
    console.log(KEYS_USAGE);
    return values.help ? 0 : 2;
  }
  const config = loadConfig();
  const asJson = values.json === true;
  switch (action) {
    case 'create': {
      if (rest.length > 0) throw new UsageError(`create takes no positional argument\n${KEYS_USAGE}`);
      if (values.role === undefined) throw new UsageError(`create: --role is required (${ROLES.join(', ')})\n${KEYS_USAGE}`);
      const role = values.role;
      const name = values.name ?? role;
      const created = await viaServiceOrStore(
        config,
        async (note) => JSON.parse(await requestService(note, 'POST', '/api/keys', { name, role }, ERR.STORE)) as ApiKeyInfo & { key: string },
        async (store) => {
          const { key, info } = await issueApiKey(store, name, role);
          return { ...info, key };
        },
      );
      if (asJson) console.log(JSON.stringify(created));
      else {
        console.error(`created API key ${created.id} "${created.name}" (role ${created.role}, ends in ${created.hint}). It is shown only this once:`);
        console.log(created.key);
      }
      return 0;
    }
    case 'list': {
      if (rest.length > 0) throw new UsageError(`list takes no positional argument\n${KEYS_USAGE}`);
      const items = await viaServiceOrStore(
        config,
        async (note) => (JSON.parse(await requestService(note, 'GET', '/api/keys', undefined, ERR.STORE)) as { items: ApiKeyInfo[] }).items,
        (store) => store.listApiKeys(),
      );
      if (asJson) console.log(JSON.stringify(items));
      else console.log(table(items));
      return 0;
    }
    case 'revoke': {
      if (rest.length !== 1) throw new UsageError(`revoke: expected exactly one key id\n${KEYS_USAGE}`);
      const id = rest[0]!;
      const revoked = await viaServiceOrStore(
        config,
        async (note) => JSON.parse(await requestService(note, 'DELETE', `/api/keys/${encodeURIComponent(id)}`, undefined, ERR.STORE)) as ApiKeyInfo,
        async (store) => {
          const r = await store.revokeApiKey(id);
          if (!r) throw new VigilError(ERR.NOT_FOUND, `no API key ${id}`, 404);
          return r;
        },
      );
      if (asJson) console.log(JSON.stringify(revoked));
      else console.log(`revoked ${revoked.id} "${revoked.name}" (role ${revoked.role}) at ${new Date(revoked.revokedAt ?? Date.now()).toISOString()}`);
      return 0;
    }
    default:
      throw new UsageError(`unknown action ${JSON.stringify(action)}: expected create, list or revoke\n${KEYS_USAGE}`);
  }
}

function table(items: readonly ApiKeyInfo[]): string {
  const rows = [['id', 'name', 'role', 'hint', 'created', 'revoked']];
  for (const k of items) {
    rows.push([k.id, k.name, k.role, `…${k.hint}`, new Date(k.createdAt).toISOString(), k.revokedAt === undefined ? '-' : new Date(k.revokedAt).toISOString()]);
  }
  const widths = rows[0]!.map((_, i) => Math.max(...rows.map((r) => r[i]!.length)));
  return rows.map((r) => r.map((c, i) => c.padEnd(widths[i]!)).join('  ').trimEnd()).join('\n');
}

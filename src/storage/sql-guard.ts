/**
 * Pre-flight checks on analyst SQL, before the engine's own `readonly` enforcement (which is the real
 * guard). The engine accepts several `;`-separated statements (chdb runs them all), so we accept only
 * one statement, starting with a read keyword, and without INTO OUTFILE (chdb writes the file even in
 * readonly mode — measured). The lexer knows ClickHouse's quoting: '…' and "…" and `…` with backslash
 * escapes and doubled quotes, $tag$…$tag$ heredocs, -- and # comments, nested block comments.
 */
import { ERR, VigilError } from '../core/errors.ts';

const READ_KEYWORDS = new Set(['SELECT', 'WITH', 'SHOW', 'DESCRIBE', 'DESC', 'EXPLAIN', 'EXISTS']);

interface Lexed {
  /** Upper-cased bare words outside quotes and comments, in order. */
  words: string[];
  /** Offsets of `;` outside quotes and comments. */
  semicolons: number[];
  /** Offset of the first character that is not whitespace, comment or `;`; -1 if none. */
  firstCode: number;
}

function lex(sql: string): Lexed {
  const words: string[] = [];
  const semicolons: number[] = [];
  let firstCode = -1;
  let i = 0;
  const n = sql.length;
  const unterminated = (what: string) => sqlError(`unterminated ${what}`);
  while (i < n) {
    const c = sql[i]!;
    const next = sql[i + 1];
    if (/\s/.test(c)) {
      i++;
      continue;
    }
    if ((c === '-' && next === '-') || (c === '#' && (next === ' ' || next === '!'))) {
      const end = sql.indexOf('\n', i);
      i = end === -1 ? n : end + 1;
      continue;
    }
    if (c === '/' && next === '*') {
      let depth = 1;
      i += 2;
      while (i < n && depth > 0) {
        if (sql[i] === '/' && sql[i + 1] === '*') (depth++, (i += 2));
        else if (sql[i] === '*' && sql[i + 1] === '/') (depth--, (i += 2));
        else i++;
      }
      if (depth > 0) throw unterminated('comment');
      continue;
    }
    if (c === ';') {
      semicolons.push(i);
      i++;
      continue;
    }
    if (firstCode === -1) firstCode = i;
    if (c === "'" || c === '"' || c === '`') {
      i++;
      for (;;) {
        if (i >= n) throw unterminated(c === "'" ? 'string' : 'quoted identifier');
        const d = sql[i]!;
        if (d === '\\') i += 2;
        else if (d === c && sql[i + 1] === c) i += 2;
        else if (d === c) {
          i++;
          break;
        } else i++;
      }
      continue;
    }
    if (c === '$') {
      const m = /^\$([A-Za-z0-9_]*)\$/.exec(sql.slice(i, i + 258));
      if (m) {
        const tag = m[0];
        const end = sql.indexOf(tag, i + tag.length);
        if (end === -1) throw unterminated('heredoc');
        i = end + tag.length;
        continue;
      }
    }
    const w = /^[A-Za-z_][A-Za-z0-9_]*/.exec(sql.slice(i, i + 256));
    if (w) {
      words.push(w[0].toUpperCase());
      i += w[0].length;
      continue;
    }
    i++;
  }
  return { words, semicolons, firstCode };
}

/**
 * Returns the single statement to run (trailing `;`, whitespace and comments removed), or throws
 * VigilError(ERR.SQL, 400) naming what is not allowed.
 */
export function singleReadStatement(sql: string): string {
  const { words, semicolons, firstCode } = lex(sql);
  if (firstCode === -1) throw sqlError('empty query');
  const first = semicolons[0];
  // Everything after the first `;` may only be more `;`, whitespace and comments.
  if (first !== undefined && lex(sql.slice(first + 1)).firstCode !== -1) throw sqlError('only one statement is allowed (found more after ";")');
  const body = first === undefined ? sql : sql.slice(0, first);
  const head = words[0];
  if (head === undefined || !READ_KEYWORDS.has(head)) {
    throw sqlError(`only read queries are allowed (SELECT, WITH, SHOW, DESCRIBE, EXPLAIN, EXISTS); got ${head ?? 'no statement'}`);
  }
  for (let k = 0; k + 1 < words.length; k++) {
    if (words[k] === 'INTO' && words[k + 1] === 'OUTFILE') throw sqlError('INTO OUTFILE is not allowed');
  }
  return body.trimEnd();
}

function sqlError(message: string): VigilError {
  return new VigilError(ERR.SQL, `SQL refused: ${message}`, 400);
}

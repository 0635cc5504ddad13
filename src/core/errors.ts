/** Errors with stable codes (VIGIL_ERR_*) and the HTTP status an API maps them to. */
export class VigilError extends Error {
  readonly code: string;
  readonly statusCode: number;
  readonly details?: unknown;
  constructor(code: string, message: string, statusCode = 500, details?: unknown) {
    super(message);
    this.name = 'VigilError';
    this.code = code;
    this.statusCode = statusCode;
    this.details = details;
  }
}

export const ERR = {
  CONFIG: 'VIGIL_ERR_CONFIG',
  RULES_INVALID: 'VIGIL_ERR_RULES_INVALID',
  BAD_REQUEST: 'VIGIL_ERR_BAD_REQUEST',
  NOT_FOUND: 'VIGIL_ERR_NOT_FOUND',
  UNAUTHORIZED: 'VIGIL_ERR_UNAUTHORIZED',
  STORE_LOCKED: 'VIGIL_ERR_STORE_LOCKED',
  STORE: 'VIGIL_ERR_STORE',
  SQL: 'VIGIL_ERR_SQL',
  INPUT_FORMAT: 'VIGIL_ERR_INPUT_FORMAT',
  FEED: 'VIGIL_ERR_FEED',
  TRANSPORT_CLOSED: 'VIGIL_ERR_TRANSPORT_CLOSED',
  FORBIDDEN: 'VIGIL_ERR_FORBIDDEN',
  PAYLOAD_TOO_LARGE: 'VIGIL_ERR_PAYLOAD_TOO_LARGE',
  RATE_LIMITED: 'VIGIL_ERR_RATE_LIMITED',
  CONFLICT: 'VIGIL_ERR_CONFLICT',
  INTERNAL: 'VIGIL_ERR_INTERNAL',
  /** Scoring: no risk score came back in time (504). */
  TIMEOUT: 'VIGIL_ERR_TIMEOUT',
  /** Scoring: not available here, or too many requests in flight (503). */
  UNAVAILABLE: 'VIGIL_ERR_UNAVAILABLE',
} as const;

export function configError(key: string, expected: string, got?: unknown): VigilError {
  const shown = got === undefined ? '' : ` (got ${JSON.stringify(got)})`;
  return new VigilError(ERR.CONFIG, `invalid configuration: ${key}: expected ${expected}${shown}`, 500, { key });
}

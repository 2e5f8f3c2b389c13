/** The token tests use, in a module of its own so the test setup loads nothing else. */

/**
 * The admin token every test gateway starts with (its `TANDEM_ADMIN_TOKEN`). The test setup
 * (helpers/setup.ts) exports it as `TANDEM_TOKEN`, so the SDK and CLI in tests send it, as a
 * user's environment would; `tandem serve` in a test takes it too (`TANDEM_ADMIN_TOKEN`).
 */
export const ADMIN_TOKEN = "tk-testadmin0000000.ts-testadmin00000000000000000000000";

/**
 * Every test process's environment, as a user's would be set: the SDK and CLI
 * send `TANDEM_TOKEN`, and each gateway a test starts (`startTestGateway`, the
 * plane stacks, `tandem serve` subprocesses) takes the same token as its
 * bootstrap admin token. Tests of the token machinery itself set their own.
 */
import { ADMIN_TOKEN } from "./tokens.js";

process.env.TANDEM_TOKEN ??= ADMIN_TOKEN;
process.env.TANDEM_ADMIN_TOKEN ??= ADMIN_TOKEN;

// One tool call per line of input, with the official TypeScript SDK client
// in its default settings (StreamableHTTPClientTransport, the SDK's own
// protocol version): what a user of that SDK gets without choosing.
// Usage: node ts_call.mjs URL '[["tool", {args}], ...]'
// Prints one JSON document: {protocolVersion, tools: [names], calls: {tool: result or {error}}}.
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";

const [url, callsJson] = process.argv.slice(2);
const client = new Client({ name: "ts-call", version: "0" });
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const out = { protocolVersion: transport.protocolVersion ?? null, tools: [], calls: {} };
let cursor;
do {
  const page = await client.listTools(cursor ? { cursor } : undefined);
  out.tools.push(...page.tools.map((t) => t.name));
  cursor = page.nextCursor;
} while (cursor);
for (const [name, args] of JSON.parse(callsJson)) {
  try {
    out.calls[name] = await client.callTool({ name, arguments: args });
  } catch (e) {
    out.calls[name] = { error: String(e?.message ?? e) };
  }
}
await transport.terminateSession();
await client.close();
console.log(JSON.stringify(out));

// A survey of an MCP server with the official TypeScript SDK client:
// everything a client can list and fetch, as one JSON document on stdout.
// Usage: node ts_survey.mjs URL [PREFIX]   (PREFIX is stripped from names)
import { Client } from "@modelcontextprotocol/sdk/client/index.js";
import { StreamableHTTPClientTransport } from "@modelcontextprotocol/sdk/client/streamableHttp.js";
import { CreateMessageRequestSchema, ElicitRequestSchema, ListRootsRequestSchema } from "@modelcontextprotocol/sdk/types.js";

const [url, prefix = ""] = process.argv.slice(2);
const strip = (name) => (name.startsWith(prefix) ? name.slice(prefix.length) : name);

async function all(list, key) {
  const items = [];
  let cursor;
  do {
    const page = await list(cursor ? { cursor } : undefined);
    items.push(...page[key]);
    cursor = page.nextCursor;
  } while (cursor);
  return items;
}

// The client answers what servers ask it (sampling, elicitation, roots), so
// servers offer it the tools that ask, and their answers are compared too.
const client = new Client(
  { name: "ts-survey", version: "0" },
  { capabilities: { sampling: {}, elicitation: { form: {}, url: {} }, roots: { listChanged: true } } },
);
client.setRequestHandler(CreateMessageRequestSchema, async (req) => ({
  role: "assistant",
  content: { type: "text", text: `ts sampled: ${req.params.messages[0].content.text}` },
  model: "ts-model",
  stopReason: "endTurn",
}));
client.setRequestHandler(ElicitRequestSchema, async () => ({ action: "accept", content: { name: "Grace Hopper", check: true } }));
client.setRequestHandler(ListRootsRequestSchema, async () => ({ roots: [{ uri: "file:///tmp/ts-root", name: "ts root" }] }));
const transport = new StreamableHTTPClientTransport(new URL(url));
await client.connect(transport);
const out = {};
const tools = await all((p) => client.listTools(p), "tools");
out.tools = tools.map((t) => ({ ...t, name: strip(t.name) }));
const prompts = await all((p) => client.listPrompts(p), "prompts");
out.prompts = prompts.map((p) => ({ ...p, name: strip(p.name) }));
out.resources = await all((p) => client.listResources(p), "resources");
out.templates = await all((p) => client.listResourceTemplates(p), "resourceTemplates");
out.calls = {};
for (const [name, args] of [["echo", { message: "from ts" }], ["get-sum", { a: 4, b: 5 }], ["get-tiny-image", {}], ["get-structured-content", { location: "New York" }], ["trigger-sampling-request", { prompt: "from ts" }], ["trigger-elicitation-request", {}]]) {
  out.calls[name] = await client.callTool({ name: prefix + name, arguments: args });
}
out.reads = {};
for (const r of out.resources.slice(0, 3)) out.reads[r.uri] = await client.readResource({ uri: r.uri });
out.prompt_results = {};
for (const p of prompts) {
  const args = Object.fromEntries((p.arguments ?? []).filter((a) => a.required).map((a) => [a.name, "1"]));
  try {
    out.prompt_results[strip(p.name)] = await client.getPrompt({ name: p.name, arguments: args });
  } catch (e) {
    out.prompt_results[strip(p.name)] = `error: ${e.message}`;
  }
}
await transport.terminateSession();
await client.close();
process.stdout.write(JSON.stringify(out));

// Streams one message with the official TypeScript SDK and prints MessageStream.finalMessage().
import Anthropic from "@anthropic-ai/sdk";

const client = new Anthropic({ baseURL: process.env.PENSIEVE_URL, apiKey: process.env.PENSIEVE_KEY, maxRetries: 0 });
const stream = client.messages.stream({
  model: "claude-sonnet-5-5",
  max_tokens: 64,
  messages: [{ role: "user", content: "Hello" }],
});
let text = "";
stream.on("text", (delta) => { text += delta; });
const message = await stream.finalMessage();
console.log(JSON.stringify({ message, text }));

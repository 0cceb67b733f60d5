// Compiled (not run) by tests/tests/sdks.rs against the package's declarations: the SDK's types
// say what PRODUCT.md's snippet and a typed caller do.
import { AIHubClient, type ChatCompletion, type ChatCompletionChunk, type NewApiKey, type Page, type Stream, type Team } from '@ai-hub/javascript';

export async function typed(client: AIHubClient): Promise<string> {
  const whole: ChatCompletion = await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Hello!' }] });
  const stream: Stream<ChatCompletionChunk> = await client.chat.completions.stream({ model: 'gpt-4o', messages: [{ role: 'user', content: 'Hello!' }] });
  let text = whole.choices[0].message.content ?? '';
  for await (const chunk of stream) text += chunk.choices[0]?.delta.content ?? '';
  const page: Page<Team> = await client.teams.list({ limit: 10 });
  for await (const team of client.teams.list()) text += team.name;
  const key: NewApiKey = await client.apiKeys.create({ name: 'ci', permissions: ['chat:write'] });
  // @ts-expect-error: not a permission
  await client.apiKeys.create({ name: 'ci', permissions: ['chat:writ'] });
  // @ts-expect-error: not a chat role
  await client.chat.completions.create({ model: 'gpt-4o', messages: [{ role: 'owner', content: 'x' }] });
  return text + page.data.length + key.key;
}

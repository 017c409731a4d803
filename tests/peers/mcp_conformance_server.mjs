// A stdio MCP server with every tool, resource and prompt the official conformance suite's
// server scenarios call (@modelcontextprotocol/conformance, `conformance server`), built on the
// official TypeScript SDK's low-level `Server`, for tether's tests: `tether bridge` serves it
// over Streamable HTTP and the suite runs against the bridge.
//
//     node mcp_conformance_server.mjs
//
// What each answer holds is what the scenario's description in the suite asks for. The
// low-level `Server` (not `McpServer`) is used so that tool schemas go out exactly as written
// here (`json-schema-2020-12` checks that `$schema`, `$defs` and `additionalProperties`
// survive). `test_reconnection` cannot close an HTTP stream from behind stdio: it answers after
// a short wait, which the suite reports as information, not a failure.
//
// The SDK is imported by path from .peers/node_modules (ESM ignores NODE_PATH): the folder is
// $TETHER_PEERS if set, else the repository's .peers.

import { pathToFileURL, fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const peers = process.env.TETHER_PEERS ?? path.join(here, '../../.peers');
const sdk = (file) =>
    import(pathToFileURL(path.join(peers, 'node_modules/@modelcontextprotocol/sdk/dist/esm', file)).href);

const { Server } = await sdk('server/index.js');
const { StdioServerTransport } = await sdk('server/stdio.js');
const types = await sdk('types.js');

// A 1x1 red PNG, and a WAV header with no samples.
const PNG =
    'iVBORw0KGgoAAAANSUhEUgAAAAEAAAABCAYAAAAfFcSJAAAADUlEQVR42mP8z8DwHwAFBQIAX8jx0gAAAABJRU5ErkJggg==';
const WAV = Buffer.from(
    'RIFF\x24\x00\x00\x00WAVEfmt \x10\x00\x00\x00\x01\x00\x01\x00\x40\x1f\x00\x00\x80\x3e\x00\x00\x02\x00\x10\x00data\x00\x00\x00\x00',
    'latin1',
).toString('base64');

const sleep = (ms) => new Promise((resolve) => setTimeout(resolve, ms));
const text = (value) => ({ type: 'text', text: value });
const noArguments = { type: 'object', properties: {} };

const tools = [
    ['test_simple_text', 'Returns simple text', noArguments],
    ['test_image_content', 'Returns an image', noArguments],
    ['test_audio_content', 'Returns audio', noArguments],
    ['test_embedded_resource', 'Returns an embedded resource', noArguments],
    ['test_multiple_content_types', 'Returns text, an image and a resource', noArguments],
    ['test_tool_with_logging', 'Logs three messages while it runs', noArguments],
    ['test_tool_with_progress', 'Reports progress while it runs', noArguments],
    ['test_error_handling', 'Always fails', noArguments],
    [
        'test_sampling',
        'Asks the client to sample',
        { type: 'object', properties: { prompt: { type: 'string' } }, required: ['prompt'] },
    ],
    [
        'test_elicitation',
        'Asks the user for input',
        { type: 'object', properties: { message: { type: 'string' } }, required: ['message'] },
    ],
    ['test_elicitation_sep1034_defaults', 'Elicits with a default for every type', noArguments],
    ['test_elicitation_sep1330_enums', 'Elicits with every kind of enum', noArguments],
    ['test_reconnection', 'Answers after a short wait', noArguments],
    [
        'json_schema_2020_12_tool',
        'Tool with JSON Schema 2020-12 features',
        {
            $schema: 'https://json-schema.org/draft/2020-12/schema',
            type: 'object',
            $defs: {
                address: {
                    type: 'object',
                    properties: { street: { type: 'string' }, city: { type: 'string' } },
                },
            },
            properties: { name: { type: 'string' }, address: { $ref: '#/$defs/address' } },
            additionalProperties: false,
        },
    ],
].map(([name, description, inputSchema]) => ({ name, description, inputSchema }));

const sep1034 = {
    type: 'object',
    properties: {
        name: { type: 'string', description: 'User name', default: 'John Doe' },
        age: { type: 'integer', description: 'User age', default: 30 },
        score: { type: 'number', description: 'User score', default: 95.5 },
        status: {
            type: 'string',
            description: 'User status',
            enum: ['active', 'inactive', 'pending'],
            default: 'active',
        },
        verified: { type: 'boolean', description: 'Verification status', default: true },
    },
};

const sep1330 = {
    type: 'object',
    properties: {
        untitledSingle: { type: 'string', enum: ['option1', 'option2', 'option3'] },
        titledSingle: {
            type: 'string',
            oneOf: [
                { const: 'value1', title: 'First Option' },
                { const: 'value2', title: 'Second Option' },
                { const: 'value3', title: 'Third Option' },
            ],
        },
        legacyEnum: {
            type: 'string',
            enum: ['opt1', 'opt2', 'opt3'],
            enumNames: ['Option One', 'Option Two', 'Option Three'],
        },
        untitledMulti: {
            type: 'array',
            items: { type: 'string', enum: ['option1', 'option2', 'option3'] },
        },
        titledMulti: {
            type: 'array',
            items: {
                anyOf: [
                    { const: 'value1', title: 'First Choice' },
                    { const: 'value2', title: 'Second Choice' },
                    { const: 'value3', title: 'Third Choice' },
                ],
            },
        },
    },
};

const server = new Server(
    { name: 'tether-conformance-server', version: '1.0.0' },
    {
        capabilities: {
            tools: {},
            resources: { subscribe: true },
            prompts: {},
            logging: {},
            completions: {},
        },
    },
);

const elicit = (extra, message, requestedSchema) =>
    extra.sendRequest(
        { method: 'elicitation/create', params: { message, requestedSchema } },
        types.ElicitResultSchema,
    );

server.setRequestHandler(types.ListToolsRequestSchema, async () => ({ tools }));

server.setRequestHandler(types.CallToolRequestSchema, async (request, extra) => {
    const args = request.params.arguments ?? {};
    const log = (data) =>
        extra.sendNotification({ method: 'notifications/message', params: { level: 'info', data } });
    switch (request.params.name) {
        case 'test_simple_text':
            return { content: [text('This is a simple text response for testing.')] };
        case 'test_image_content':
            return { content: [{ type: 'image', data: PNG, mimeType: 'image/png' }] };
        case 'test_audio_content':
            return { content: [{ type: 'audio', data: WAV, mimeType: 'audio/wav' }] };
        case 'test_embedded_resource':
            return {
                content: [
                    {
                        type: 'resource',
                        resource: {
                            uri: 'test://embedded-resource',
                            mimeType: 'text/plain',
                            text: 'This is an embedded resource content.',
                        },
                    },
                ],
            };
        case 'test_multiple_content_types':
            return {
                content: [
                    text('Multiple content types test:'),
                    { type: 'image', data: PNG, mimeType: 'image/png' },
                    {
                        type: 'resource',
                        resource: {
                            uri: 'test://mixed-content-resource',
                            mimeType: 'application/json',
                            text: '{"test":"data","value":123}',
                        },
                    },
                ],
            };
        case 'test_tool_with_logging':
            await log('Tool execution started');
            await sleep(50);
            await log('Tool processing data');
            await sleep(50);
            await log('Tool execution completed');
            return { content: [text('Logging test completed')] };
        case 'test_tool_with_progress': {
            const token = request.params._meta?.progressToken;
            for (const progress of [0, 50, 100]) {
                if (token !== undefined) {
                    await extra.sendNotification({
                        method: 'notifications/progress',
                        params: { progressToken: token, progress, total: 100 },
                    });
                }
                if (progress < 100) await sleep(50);
            }
            return { content: [text('Progress test completed')] };
        }
        case 'test_error_handling':
            return {
                isError: true,
                content: [text('This tool intentionally returns an error for testing')],
            };
        case 'test_sampling': {
            const result = await extra.sendRequest(
                {
                    method: 'sampling/createMessage',
                    params: {
                        messages: [{ role: 'user', content: text(String(args.prompt ?? '')) }],
                        maxTokens: 100,
                    },
                },
                types.CreateMessageResultSchema,
            );
            return { content: [text(`LLM response: ${result.content?.text ?? ''}`)] };
        }
        case 'test_elicitation': {
            const result = await elicit(extra, String(args.message ?? ''), {
                type: 'object',
                properties: {
                    username: { type: 'string', description: "User's response" },
                    email: { type: 'string', description: "User's email address" },
                },
                required: ['username', 'email'],
            });
            return {
                content: [
                    text(`User response: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`),
                ],
            };
        }
        case 'test_elicitation_sep1034_defaults':
        case 'test_elicitation_sep1330_enums': {
            const schema = request.params.name.includes('1034') ? sep1034 : sep1330;
            const result = await elicit(extra, 'Please review and accept', schema);
            return {
                content: [
                    text(`Elicitation completed: action=${result.action}, content=${JSON.stringify(result.content ?? {})}`),
                ],
            };
        }
        case 'test_reconnection':
            await sleep(100);
            return { content: [text('Reconnection test completed')] };
        case 'json_schema_2020_12_tool':
            return { content: [text(`Received: ${JSON.stringify(args)}`)] };
        default:
            throw new types.McpError(types.ErrorCode.InvalidParams, `Unknown tool: ${request.params.name}`);
    }
});

const resources = [
    { uri: 'test://static-text', name: 'static-text', description: 'A static text resource', mimeType: 'text/plain' },
    { uri: 'test://static-binary', name: 'static-binary', description: 'A static PNG', mimeType: 'image/png' },
    { uri: 'test://watched-resource', name: 'watched-resource', description: 'A resource to subscribe to', mimeType: 'text/plain' },
];

server.setRequestHandler(types.ListResourcesRequestSchema, async () => ({ resources }));

server.setRequestHandler(types.ListResourceTemplatesRequestSchema, async () => ({
    resourceTemplates: [
        {
            uriTemplate: 'test://template/{id}/data',
            name: 'template',
            description: 'Data for an id',
            mimeType: 'application/json',
        },
    ],
}));

server.setRequestHandler(types.ReadResourceRequestSchema, async (request) => {
    const uri = request.params.uri;
    if (uri === 'test://static-text') {
        return { contents: [{ uri, mimeType: 'text/plain', text: 'This is the content of the static text resource.' }] };
    }
    if (uri === 'test://static-binary') {
        return { contents: [{ uri, mimeType: 'image/png', blob: PNG }] };
    }
    if (uri === 'test://watched-resource') {
        return { contents: [{ uri, mimeType: 'text/plain', text: 'Watched.' }] };
    }
    const template = /^test:\/\/template\/([^/]+)\/data$/.exec(uri);
    if (template) {
        const id = template[1];
        const data = { id, templateTest: true, data: `Data for ID: ${id}` };
        return { contents: [{ uri, mimeType: 'application/json', text: JSON.stringify(data) }] };
    }
    throw new types.McpError(types.ErrorCode.InvalidParams, `Unknown resource: ${uri}`);
});

server.setRequestHandler(types.SubscribeRequestSchema, async () => ({}));
server.setRequestHandler(types.UnsubscribeRequestSchema, async () => ({}));

const prompts = [
    { name: 'test_simple_prompt', description: 'A simple prompt' },
    {
        name: 'test_prompt_with_arguments',
        description: 'A prompt with arguments',
        arguments: [
            { name: 'arg1', description: 'First test argument', required: true },
            { name: 'arg2', description: 'Second test argument', required: true },
        ],
    },
    {
        name: 'test_prompt_with_embedded_resource',
        description: 'A prompt with an embedded resource',
        arguments: [{ name: 'resourceUri', description: 'URI of the resource to embed', required: true }],
    },
    { name: 'test_prompt_with_image', description: 'A prompt with an image' },
];

server.setRequestHandler(types.ListPromptsRequestSchema, async () => ({ prompts }));

server.setRequestHandler(types.GetPromptRequestSchema, async (request) => {
    const args = request.params.arguments ?? {};
    const user = (content) => ({ role: 'user', content });
    switch (request.params.name) {
        case 'test_simple_prompt':
            return { messages: [user(text('This is a simple prompt for testing.'))] };
        case 'test_prompt_with_arguments':
            return {
                messages: [user(text(`Prompt with arguments: arg1='${args.arg1}', arg2='${args.arg2}'`))],
            };
        case 'test_prompt_with_embedded_resource':
            return {
                messages: [
                    user({
                        type: 'resource',
                        resource: {
                            uri: String(args.resourceUri),
                            mimeType: 'text/plain',
                            text: 'Embedded resource content for testing.',
                        },
                    }),
                    user(text('Please process the embedded resource above.')),
                ],
            };
        case 'test_prompt_with_image':
            return {
                messages: [
                    user({ type: 'image', data: PNG, mimeType: 'image/png' }),
                    user(text('Please analyze the image above.')),
                ],
            };
        default:
            throw new types.McpError(types.ErrorCode.InvalidParams, `Unknown prompt: ${request.params.name}`);
    }
});

server.setRequestHandler(types.CompleteRequestSchema, async () => ({
    completion: { values: [], total: 0, hasMore: false },
}));

await server.connect(new StdioServerTransport());

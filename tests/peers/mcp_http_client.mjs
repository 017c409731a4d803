// An MCP client over Streamable HTTP, built on the official TypeScript SDK
// (@modelcontextprotocol/sdk: `Client` and `StreamableHTTPClientTransport`), for tether's tests.
//
//     node mcp_http_client.mjs URL SCENARIO [--token TOKEN] [--healthz URL] [--steps N] [--cut-after K]
//
// It prints one JSON line per observation ({"event": ...}), then {"event": "done"}; the caller
// asserts on what it saw. An unexpected error ends it with status 1.
//
// The SDK is imported by path from .peers/node_modules (ESM ignores NODE_PATH): the folder is
// $TETHER_PEERS if set, else the repository's .peers. Every HTTP exchange goes through the
// transport's `fetch` option, a recording wrapper around Node's fetch, which is how the script
// sees statuses and raw server-sent events, and how it cuts a response stream in `resume`.
//
// Scenarios:
//   basic         connect (initialize), listTools, callTool echo (and get-env where the server
//                 has it), transport.terminateSession() (DELETE), close; then a request with the
//                 ended session's id
//   two           two clients at once, interleaved concurrent echo calls
//   resume        a long-running tool with progress; its response stream is cut after K progress
//                 notifications (automatic reconnection off); the request is then sent again with
//                 the last `resumptionToken` (the SDK's GET with Last-Event-ID)
//   unauthorized  connect without the token

import { pathToFileURL, fileURLToPath } from 'node:url';
import path from 'node:path';

const here = path.dirname(fileURLToPath(import.meta.url));
const peers = process.env.TETHER_PEERS ?? path.join(here, '../../.peers');
const sdk = (file) =>
    import(pathToFileURL(path.join(peers, 'node_modules/@modelcontextprotocol/sdk/dist/esm', file)).href);
const { Client } = await sdk('client/index.js');
const { StreamableHTTPClientTransport, StreamableHTTPError } = await sdk('client/streamableHttp.js');
const { CallToolResultSchema } = await sdk('types.js');

const ECHO = 'echo';
const LONG_RUNNING = 'trigger-long-running-operation';

function emit(event, fields = {}) {
    process.stdout.write(JSON.stringify({ event, ...fields }) + '\n');
}

function parseArgs(argv) {
    const args = { token: '', healthz: '', steps: 5, cutAfter: 2, positional: [] };
    for (let i = 0; i < argv.length; i++) {
        switch (argv[i]) {
            case '--token': args.token = argv[++i]; break;
            case '--healthz': args.healthz = argv[++i]; break;
            case '--steps': args.steps = Number(argv[++i]); break;
            case '--cut-after': args.cutAfter = Number(argv[++i]); break;
            default: args.positional.push(argv[i]);
        }
    }
    [args.url, args.scenario] = args.positional;
    if (!args.url || !['basic', 'two', 'resume', 'unauthorized'].includes(args.scenario)) {
        process.stderr.write('usage: mcp_http_client.mjs URL basic|two|resume|unauthorized [--token T]\n');
        process.exit(2);
    }
    return args;
}

/** One server-sent event's id and data (the data parsed as JSON where it is). */
function parseEvent(raw) {
    let id = null;
    const data = [];
    for (const line of raw.split(/\r\n|\r|\n/)) {
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let value = colon < 0 ? '' : line.slice(colon + 1);
        if (value.startsWith(' ')) value = value.slice(1);
        if (field === 'id') id = value;
        else if (field === 'data') data.push(value);
    }
    const text = data.join('\n');
    let parsed = null;
    if (text) {
        try { parsed = JSON.parse(text); } catch { parsed = text; }
    }
    return { id, data: parsed };
}

const progressOf = (event) =>
    event.data && event.data.method === 'notifications/progress' ? event.data.params.progress : null;

/** A `fetch` that records every exchange, and can cut one response stream. */
class Recorder {
    constructor(token, extraHeaders = {}) {
        this.token = token;
        this.extraHeaders = extraHeaders;
        this.exchanges = [];
        // Cut the SSE answer to the POST whose body contains `cutMarker` after `cutAfter`
        // progress notifications, once `delivered(cutAfter)` resolves (the SDK has handled them).
        this.cutMarker = null;
        this.cutAfter = 0;
        this.delivered = null;
        this.fetch = (url, init) => this._fetch(url, init);
    }

    async _fetch(url, init = {}) {
        const headers = new Headers(init.headers);
        if (this.token) headers.set('Authorization', `Bearer ${this.token}`);
        for (const [name, value] of Object.entries(this.extraHeaders)) headers.set(name, value);
        const method = (init.method ?? 'GET').toUpperCase();
        const body = typeof init.body === 'string' ? init.body : '';
        const exchange = {
            method,
            body: body ? JSON.parse(body) : null,
            session: headers.get('mcp-session-id'),
            lastEventId: headers.get('last-event-id'),
            events: [],
        };
        this.exchanges.push(exchange);
        const response = await fetch(url, { ...init, headers });
        exchange.status = response.status;
        exchange.contentType = response.headers.get('content-type');
        exchange.sessionReturned = response.headers.get('mcp-session-id');
        if (!(exchange.contentType ?? '').startsWith('text/event-stream') || !response.body) {
            return response;
        }
        let cut = null;
        if (this.cutMarker !== null && body.includes(this.cutMarker)) {
            cut = this.cutAfter;
            this.cutMarker = null;
        }
        return new Response(this._tee(response.body, exchange, cut), {
            status: response.status,
            statusText: response.statusText,
            headers: response.headers,
        });
    }

    /** The body passed on whole events at a time, each recorded; with `cut`, it fails (as the
     * network would) after the event that carries that many progress notifications, once the SDK
     * has handled it, and the connection under it is closed. */
    _tee(stream, exchange, cut) {
        const reader = stream.getReader();
        const decoder = new TextDecoder();
        const encoder = new TextEncoder();
        let pending = '';
        let progress = 0;
        let cutting = false;
        const delivered = this.delivered;
        return new ReadableStream({
            async pull(controller) {
                if (cutting) {
                    await delivered(cut);
                    exchange.cut = true;
                    await reader.cancel('the test cut this stream');
                    controller.error(new Error('the test cut this stream'));
                    return;
                }
                let ready = '';
                while (!ready) {
                    const { value, done } = await reader.read();
                    if (done) {
                        if (pending) controller.enqueue(encoder.encode(pending));
                        controller.close();
                        return;
                    }
                    pending += decoder.decode(value, { stream: true });
                    let match;
                    while ((match = /\r\n\r\n|\n\n|\r\r/.exec(pending)) !== null) {
                        const end = match.index + match[0].length;
                        const raw = pending.slice(0, end);
                        pending = pending.slice(end);
                        const event = parseEvent(raw);
                        exchange.events.push(event);
                        ready += raw;
                        if (progressOf(event) !== null) progress++;
                        if (cut !== null && progress >= cut) {
                            cutting = true;
                            break;
                        }
                    }
                    if (cutting) break;
                }
                controller.enqueue(encoder.encode(ready));
            },
            cancel(reason) {
                return reader.cancel(reason);
            },
        });
    }

    firstSession() {
        return this.exchanges.find((x) => x.sessionReturned)?.sessionReturned ?? null;
    }
}

function connectClient(args, recorder, transportOptions = {}) {
    const transport = new StreamableHTTPClientTransport(new URL(args.url), {
        fetch: recorder.fetch,
        ...transportOptions,
    });
    const client = new Client({ name: 'tether-tests', version: '0.1.0' });
    return { client, transport };
}

const textOf = (result) => result.content.filter((c) => c.type === 'text').map((c) => c.text).join('');

/** server-everything answers `Echo: MESSAGE`, the Python SDK server `MESSAGE`. */
const echoed = (text, message) => text === message || text === `Echo: ${message}`;

async function healthz(args) {
    if (!args.healthz) return;
    const response = await fetch(args.healthz);
    emit('healthz', { status: response.status, body: await response.json() });
}

/** A POST the SDK would not send, with fetch alone. */
async function rawPost(args, session, message) {
    const headers = {
        Accept: 'application/json, text/event-stream',
        'Content-Type': 'application/json',
        'Mcp-Session-Id': session,
    };
    if (args.token) headers.Authorization = `Bearer ${args.token}`;
    const response = await fetch(args.url, { method: 'POST', headers, body: JSON.stringify(message) });
    await response.body?.cancel();
    return response;
}

async function basic(args) {
    const recorder = new Recorder(args.token);
    const { client, transport } = connectClient(args, recorder);
    await client.connect(transport);
    const server = client.getServerVersion();
    emit('initialized', { server: server?.name, session: transport.sessionId ?? null });
    const tools = await client.listTools();
    const names = tools.tools.map((t) => t.name).sort();
    emit('tools', { names });
    const result = await client.callTool({ name: ECHO, arguments: { message: 'hello from typescript' } });
    const text = textOf(result);
    emit('echo', { text, ok: echoed(text, 'hello from typescript'), is_error: result.isError ?? false });
    if (names.includes('get-env')) {
        const env = JSON.parse(textOf(await client.callTool({ name: 'get-env', arguments: {} })));
        emit('env', { client_addr: env.TETHER_CLIENT_ADDR ?? null });
    }
    await healthz(args);
    const session = transport.sessionId;
    await transport.terminateSession();
    await client.close();
    const deletes = recorder.exchanges.filter((x) => x.method === 'DELETE');
    emit('terminated', { statuses: deletes.map((x) => x.status), session: deletes[0]?.session ?? null });
    if (session) {
        const response = await rawPost(args, session, { jsonrpc: '2.0', id: 99, method: 'tools/list', params: {} });
        emit('after_end', { status: response.status });
    }
}

async function two(args) {
    const calls = 20;
    const sides = [0, 1].map(() => {
        const recorder = new Recorder(args.token);
        return { recorder, ...connectClient(args, recorder) };
    });
    await Promise.all(sides.map(({ client, transport }) => client.connect(transport)));
    const results = new Map();
    // Interleaved: session 0 call 0, session 1 call 0, session 0 call 1, ... all in flight at once.
    const pending = [];
    for (let j = 0; j < calls; j++) {
        sides.forEach(({ client }, i) => {
            const message = `session ${i} call ${j}`;
            pending.push(
                client.callTool({ name: ECHO, arguments: { message } }).then((r) => results.set(message, textOf(r))),
            );
        });
    }
    await Promise.all(pending);
    await healthz(args);
    const sessions = sides.map(({ transport }) => transport.sessionId ?? null);
    for (const { client, transport } of sides) {
        await transport.terminateSession();
        await client.close();
    }
    const crossed = [...results].filter(([message, text]) => !echoed(text, message));
    emit('two', {
        sessions,
        answers: results.size,
        crossed,
        terminated: sides.map(({ recorder }) =>
            recorder.exchanges.filter((x) => x.method === 'DELETE').map((x) => x.status)),
    });
}

async function resume(args) {
    const recorder = new Recorder(args.token);
    const progress = [];
    const waiters = [];
    recorder.delivered = (count) =>
        new Promise((resolve) => {
            if (progress.length >= count) resolve();
            else waiters.push([count, resolve]);
        });
    const onprogress = (p) => {
        progress.push(p.progress);
        for (const [count, resolve] of waiters) if (progress.length >= count) resolve();
    };
    const tokens = [];
    const onresumptiontoken = (token) => tokens.push(token);
    const errors = [];
    // No automatic reconnection: the script resumes by itself.
    const { client, transport } = connectClient(args, recorder, {
        reconnectionOptions: {
            maxRetries: 0,
            initialReconnectionDelay: 1000,
            maxReconnectionDelay: 1000,
            reconnectionDelayGrowFactor: 1,
        },
    });
    await client.connect(transport);
    transport.onerror = (error) => errors.push(String(error));
    const request = {
        method: 'tools/call',
        params: { name: LONG_RUNNING, arguments: { duration: args.steps * 0.4, steps: args.steps } },
    };
    recorder.cutMarker = LONG_RUNNING;
    recorder.cutAfter = args.cutAfter;
    // The first attempt never settles: its response stream is cut and not resumed by the SDK.
    const first = client.request(request, CallToolResultSchema, { onprogress, onresumptiontoken });
    first.catch(() => {});
    await recorder.delivered(args.cutAfter);
    // Wait for the cut to have happened (the stream errors once the SDK handled the events).
    const cutSeen = await new Promise((resolve) => {
        const check = () => {
            const post = recorder.exchanges.find((x) => x.method === 'POST' && x.body?.params?.name === LONG_RUNNING);
            if (post?.cut) resolve(true);
            else setTimeout(check, 10);
        };
        check();
    });
    emit('cut', { cut: cutSeen, progress: [...progress], token: tokens.at(-1) ?? null });
    const token = tokens.at(-1);
    if (!token) throw new Error('no resumption token was recorded before the cut');
    // The replayed progress notifications carry the first attempt's progress token, so they
    // reach `onprogress` through the first attempt's handler.
    const result = await client.request(request, CallToolResultSchema, {
        resumptionToken: token,
        onresumptiontoken,
        onprogress,
    });
    const posts = recorder.exchanges.filter((x) => x.method === 'POST' && x.body?.params?.name === LONG_RUNNING);
    const gets = recorder.exchanges.filter((x) => x.method === 'GET' && x.lastEventId);
    const progressIn = (xs) => xs.flatMap((x) => x.events.map(progressOf).filter((p) => p !== null));
    emit('resumed', {
        text: textOf(result),
        is_error: result.isError ?? false,
        token,
        last_event_id_sent: gets.map((x) => x.lastEventId),
        resume_statuses: gets.map((x) => x.status),
        progress_before: progressIn(posts),
        progress_after: progressIn(gets),
        progress_delivered: [...progress],
        steps: args.steps,
        event_ids: [...posts, ...gets].flatMap((x) => x.events.filter((e) => e.data !== null).map((e) => e.id)),
        posts_cut: posts.map((x) => x.cut ?? false),
    });
    await transport.terminateSession();
    await client.close();
    emit('terminated', {
        statuses: recorder.exchanges.filter((x) => x.method === 'DELETE').map((x) => x.status),
    });
}

async function unauthorized(args) {
    const recorder = new Recorder('');
    const { client, transport } = connectClient(args, recorder);
    try {
        await client.connect(transport);
        emit('initialized');
        await transport.terminateSession();
    } catch (error) {
        emit('refused', {
            code: error instanceof StreamableHTTPError ? error.code : null,
            error: String(error),
        });
    }
    await client.close();
    emit('unauthorized', {
        statuses: recorder.exchanges.map((x) => x.status),
        methods: recorder.exchanges.map((x) => x.method),
    });
}

const args = parseArgs(process.argv.slice(2));
try {
    await { basic, two, resume, unauthorized }[args.scenario](args);
    emit('done');
    process.exit(0);
} catch (error) {
    process.stderr.write(`${error?.stack ?? error}\n`);
    process.exit(1);
}

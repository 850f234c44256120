#!/usr/bin/env python3
"""test/llm_server.py: the project's OpenAI-protocol test server (Chat Completions).

    test/llm_server.py --port PORT (--key KEY | --key-file SECRETS) [--model gpt-4o-mini]

Python 3 standard library only. Listens on 127.0.0.1:PORT and serves

  POST /v1/chat/completions   the recommendation re-rank call (see below)
  GET  /v1/models             200 with a model list when authorized, 401 otherwise
  GET  /control/stats         {"pid", "requests", "rejected", "by_mode", "mode", "last_rejection"}
  GET  /control/last          the last chat request that passed the checks:
                              {"request": body, "picks_wanted": n, "candidates": [ids]}
  POST /control               {"mode": M} and/or {"reset_stats": true}; mode "ok" resets

Every API request is checked strictly, as OpenAI would: "Authorization: Bearer <key>"
equal to the key given on the command line (--key-file reads the "llm_api_key = ..."
line of a recsys secrets file), a JSON body, model equal to --model, messages a
non-empty list of {role, content} with a user message, response_format exactly
{"type": "json_object"}, no unknown top-level parameter, and a user message this
server can read (the line format below). A request that fails a check is answered
400, 401 or 404 with an OpenAI-style error body and counted in "rejected"; a test suite
fails when that count is not 0.

Prompt lines read from the user message (src/llm.c writes them):

  picks wanted: <n>
  candidate <id> | <title> (<year>) | <genres>

The answer is deterministic: the candidates in reverse order of the prompt (so a test
can tell the list was re-ranked), the first n of them, each with the reason
"Picked by the test LLM: <title>" (the title without its " (year)").

Modes (POST /control {"mode": ...}) change the chat answers only:

  ok        the answer above
  slow      sleep 30 s (or "delay" seconds) before answering ok; a shutdown ends it
  429       HTTP 429 with Retry-After: 1 (rate limited)
  500       HTTP 500 (server error)
  badjson   a 200 whose message content is not JSON
  nochoices a 200 with an empty "choices" list
  invent    two ids that are not candidates, one duplicate, then valid picks: the
            picks are [U1, r1, r1, U2, r2, ..., rk] with r the answer above and
            k = max(1, n - 2), U1/U2 = the largest candidate id + 1 and + 2
  unknown   n picks, none of them a candidate id
  empty     {"picks": []}

SIGTERM or SIGINT shuts it down cleanly (a slow answer in progress stops waiting).
"""
import argparse
import json
import os
import re
import signal
import sys
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

MODES = ("ok", "slow", "429", "500", "badjson", "nochoices", "invent", "unknown", "empty")
ALLOWED_PARAMS = {
    "model", "messages", "response_format", "temperature", "max_tokens",
    "max_completion_tokens", "seed", "n", "top_p", "user", "stream",
}
ROLES = ("system", "developer", "user", "assistant")
CANDIDATE_RE = re.compile(r"^candidate (-?\d+) \| (.*) \| (.*)$")
WANTED_RE = re.compile(r"^picks wanted: (\d+)\s*$", re.IGNORECASE)
YEAR_RE = re.compile(r" \((\d{4})\)$")

stopping = threading.Event()


class State:
    """Mode and counters shared by the handler threads."""

    def __init__(self, key, model):
        self.key = key
        self.model = model
        self.lock = threading.Lock()
        self.mode = "ok"
        self.delay = 30.0
        self.reset()

    def reset(self):
        self.requests = 0
        self.rejected = 0
        self.by_mode = {}
        self.last_rejection = None
        self.last_request = None
        self.serial = 0


class RejectError(Exception):
    """A request check failed: answered with an OpenAI-style error, counted as rejected."""

    def __init__(self, status, message, etype="invalid_request_error", code=None, param=None):
        super().__init__(message)
        self.status = status
        self.message = message
        self.etype = etype
        self.code = code
        self.param = param


def error_body(message, etype, code=None, param=None):
    return {"error": {"message": message, "type": etype, "param": param, "code": code}}


def parse_prompt(text):
    """Return (n_wanted, [(id, title)]) read from the user message, or raise RejectError."""
    wanted = None
    candidates = []
    for line in text.splitlines():
        line = line.strip()
        m = WANTED_RE.match(line)
        if m:
            wanted = int(m.group(1))
            continue
        m = CANDIDATE_RE.match(line)
        if m:
            title = YEAR_RE.sub("", m.group(2).strip())
            candidates.append((int(m.group(1)), title))
    if not candidates:
        raise RejectError(400, "the test LLM found no 'candidate <id> | <title> (<year>) | <genres>' "
                          "line in the user message", param="messages")
    if wanted is None or wanted < 1:
        raise RejectError(400, "the test LLM found no 'picks wanted: <n>' line (n >= 1) in the "
                          "user message", param="messages")
    ids = [c[0] for c in candidates]
    if len(set(ids)) != len(ids):
        raise RejectError(400, "the user message lists a candidate id twice", param="messages")
    return wanted, candidates


def answer_picks(mode, wanted, candidates):
    """Return the list of picks (dicts) the given mode answers."""
    order = list(reversed(candidates))
    chosen = order[:wanted]

    def pick(c):
        return {"movie_id": c[0], "reason": "Picked by the test LLM: %s" % c[1]}

    biggest = max(c[0] for c in candidates)
    if mode == "invent":
        k = max(1, wanted - 2)
        valid = [pick(c) for c in order[:k]]
        u1 = {"movie_id": biggest + 1, "reason": "Picked by the test LLM: an invented movie"}
        u2 = {"movie_id": biggest + 2, "reason": "Picked by the test LLM: another invented movie"}
        return [u1, valid[0], dict(valid[0]), u2] + valid[1:]
    if mode == "unknown":
        return [{"movie_id": biggest + 1 + i, "reason": "Picked by the test LLM: nothing real"}
                for i in range(wanted)]
    if mode == "empty":
        return []
    return [pick(c) for c in chosen]


class Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server_version = "recsys-test-llm/1"

    def log_message(self, fmt, *args):
        sys.stderr.write("%s llm_server: %s\n" % (time.strftime("%Y-%m-%d %H:%M:%S"), fmt % args))

    @property
    def state(self):
        return self.server.state

    def send_json(self, status, obj, headers=None):
        body = json.dumps(obj).encode()
        try:
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(body)))
            for k, v in (headers or {}).items():
                self.send_header(k, v)
            self.end_headers()
            self.wfile.write(body)
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client gave up (its timeout): nothing to answer

    def read_body(self):
        length = self.headers.get("Content-Length")
        if length is None:
            if self.headers.get("Transfer-Encoding", "").lower() == "chunked":
                raise RejectError(400, "chunked request bodies are not accepted by the test LLM")
            return b""
        return self.rfile.read(int(length))

    def reject(self, e):
        with self.state.lock:
            self.state.rejected += 1
            self.state.last_rejection = "%s %s: %d %s" % (self.command, self.path, e.status, e.message)
        self.log_message("rejected %s %s: %d %s", self.command, self.path, e.status, e.message)
        self.send_json(e.status, error_body(e.message, e.etype, e.code, e.param))

    def check_auth(self):
        auth = self.headers.get("Authorization")
        if auth is None:
            raise RejectError(401, "You didn't provide an API key. You need to provide your API key "
                              "in an Authorization header using Bearer auth.", code=None)
        if not auth.startswith("Bearer ") or auth[len("Bearer "):] != self.state.key:
            raise RejectError(401, "Incorrect API key provided.", code="invalid_api_key")

    # ------------------------------------------------------------ GET
    def do_GET(self):
        if self.path == "/control/stats":
            with self.state.lock:
                s = self.state
                self.send_json(200, {"pid": os.getpid(), "requests": s.requests, "rejected": s.rejected,
                                     "by_mode": dict(s.by_mode), "mode": s.mode,
                                     "last_rejection": s.last_rejection})
            return
        if self.path == "/control/last":
            with self.state.lock:
                last = self.state.last_request
            self.send_json(200, last if last is not None else {})
            return
        with self.state.lock:
            self.state.requests += 1
        try:
            if self.path != "/v1/models":
                raise RejectError(404, "Unknown request URL: GET %s." % self.path, code="unknown_url")
            self.check_auth()
        except RejectError as e:
            self.reject(e)
            return
        self.send_json(200, {"object": "list", "data": [
            {"id": self.state.model, "object": "model", "created": 1700000000, "owned_by": "recsys-test"}]})

    # ------------------------------------------------------------ POST
    def do_POST(self):
        if self.path == "/control":
            self.control()
            return
        with self.state.lock:
            self.state.requests += 1
        try:
            body = self.read_body()
            if self.path != "/v1/chat/completions":
                raise RejectError(404, "Unknown request URL: POST %s." % self.path, code="unknown_url")
            self.check_auth()
            req = self.check_chat(body)
        except RejectError as e:
            self.reject(e)
            return
        with self.state.lock:
            s = self.state
            mode, delay = s.mode, s.delay
            s.by_mode[mode] = s.by_mode.get(mode, 0) + 1
            s.serial += 1
            serial = s.serial
            s.last_request = {"request": req, "picks_wanted": self._parsed[0],
                              "candidates": [c[0] for c in self._parsed[1]]}
        self.answer(mode, delay, serial, req)

    def check_chat(self, body):
        """Check a Chat Completions request; return it parsed, or raise RejectError."""
        ctype = self.headers.get("Content-Type", "")
        if not ctype.split(";")[0].strip().lower() == "application/json":
            raise RejectError(400, "the request Content-Type must be application/json, not %r" % ctype)
        try:
            req = json.loads(body.decode("utf-8"))
        except (UnicodeDecodeError, ValueError) as e:
            raise RejectError(400, "We could not parse the JSON body of your request. (%s)" % e)
        if not isinstance(req, dict):
            raise RejectError(400, "the request body must be a JSON object")
        unknown = sorted(set(req) - ALLOWED_PARAMS)
        if unknown:
            raise RejectError(400, "Unrecognized request argument supplied: %s" % ", ".join(unknown))
        if req.get("model") != self.state.model:
            raise RejectError(404 if isinstance(req.get("model"), str) else 400,
                              "The model %r does not exist or you do not have access to it "
                              "(this server serves %r)." % (req.get("model"), self.state.model),
                              code="model_not_found", param="model")
        if req.get("stream"):
            raise RejectError(400, "the test LLM does not stream; do not set stream", param="stream")
        msgs = req.get("messages")
        if not isinstance(msgs, list) or not msgs:
            raise RejectError(400, "'messages' must be a non-empty array", param="messages")
        user_text = None
        for i, m in enumerate(msgs):
            if (not isinstance(m, dict) or m.get("role") not in ROLES
                    or not isinstance(m.get("content"), str) or set(m) - {"role", "content", "name"}):
                raise RejectError(400, "messages[%d] must be {\"role\": one of %s, \"content\": a string}"
                                  % (i, "/".join(ROLES)), param="messages[%d]" % i)
            if m["role"] == "user":
                user_text = m["content"]
        if user_text is None:
            raise RejectError(400, "'messages' holds no user message", param="messages")
        if req.get("response_format") != {"type": "json_object"}:
            raise RejectError(400, "response_format must be {\"type\": \"json_object\"}, got %s"
                              % json.dumps(req.get("response_format")), param="response_format")
        if "json" not in " ".join(m["content"] for m in msgs).lower():
            raise RejectError(400, "'messages' must contain the word 'json' in some form, to use "
                              "'response_format' of type 'json_object'.", param="messages")
        t = req.get("temperature", 1)
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not 0 <= t <= 2:
            raise RejectError(400, "temperature must be a number from 0 to 2", param="temperature")
        wanted, candidates = parse_prompt(user_text)
        self._parsed = (wanted, candidates)
        return req

    def answer(self, mode, delay, serial, req):
        wanted, candidates = self._parsed
        if mode == "slow":
            if stopping.wait(delay):
                return  # shutting down: drop the answer
            mode = "ok"
        if mode == "429":
            self.send_json(429, error_body("Rate limit reached for requests (test LLM).", "requests",
                                           "rate_limit_exceeded"), {"Retry-After": "1"})
            return
        if mode == "500":
            self.send_json(500, error_body("The server had an error while processing your request "
                                           "(test LLM).", "server_error"))
            return
        if mode == "badjson":
            content = "Sure! Here are my picks: %s" % ", ".join(str(c[0]) for c in candidates[:wanted])
        else:
            content = json.dumps({"picks": answer_picks(mode, wanted, candidates)})
        choices = [] if mode == "nochoices" else [{
            "index": 0, "message": {"role": "assistant", "content": content},
            "logprobs": None, "finish_reason": "stop"}]
        self.send_json(200, {
            "id": "chatcmpl-test-%d" % serial, "object": "chat.completion",
            "created": int(time.time()), "model": self.state.model, "choices": choices,
            "usage": {"prompt_tokens": len(json.dumps(req)) // 4, "completion_tokens": len(content) // 4,
                      "total_tokens": (len(json.dumps(req)) + len(content)) // 4}})

    def control(self):
        try:
            cmd = json.loads(self.read_body().decode("utf-8") or "{}")
            if not isinstance(cmd, dict):
                raise ValueError("not an object")
        except (ValueError, UnicodeDecodeError, RejectError) as e:
            self.send_json(400, error_body("bad control request: %s" % e, "invalid_request_error"))
            return
        mode = cmd.get("mode")
        if mode is not None and mode not in MODES:
            self.send_json(400, error_body("unknown mode %r (one of %s)" % (mode, ", ".join(MODES)),
                                           "invalid_request_error"))
            return
        with self.state.lock:
            if mode is not None:
                self.state.mode = mode
                self.state.delay = float(cmd.get("delay", 30))
            if cmd.get("reset_stats"):
                self.state.reset()
            out = {"mode": self.state.mode}
        self.send_json(200, out)


def read_key_file(path):
    """Return the llm_api_key value of a recsys secrets file ("name = value" lines)."""
    with open(path) as f:
        for line in f:
            name, sep, value = line.partition("=")
            if sep and name.strip() == "llm_api_key":
                return value.strip()
    sys.exit("llm_server: no llm_api_key line in %s" % path)


def main():
    ap = argparse.ArgumentParser(description="OpenAI-protocol test server for recsys")
    ap.add_argument("--port", type=int, required=True)
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--model", default="gpt-4o-mini")
    g = ap.add_mutually_exclusive_group(required=True)
    g.add_argument("--key")
    g.add_argument("--key-file")
    args = ap.parse_args()
    key = args.key if args.key is not None else read_key_file(args.key_file)
    if not key:
        sys.exit("llm_server: the API key is empty")

    httpd = ThreadingHTTPServer((args.host, args.port), Handler)
    httpd.daemon_threads = True
    httpd.state = State(key, args.model)

    def on_signal(signum, frame):
        stopping.set()

    signal.signal(signal.SIGTERM, on_signal)
    signal.signal(signal.SIGINT, on_signal)
    loop = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.2}, daemon=True)
    loop.start()
    sys.stderr.write("llm_server: listening on %s:%d, model %s\n" % (args.host, args.port, args.model))
    sys.stderr.flush()
    while not stopping.wait(1.0):
        pass
    httpd.shutdown()
    httpd.server_close()
    sys.stderr.write("llm_server: stopped\n")


if __name__ == "__main__":
    main()

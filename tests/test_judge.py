"The judge's HTTP transport over a real socket: a throwaway OpenAI-compatible server on 127.0.0.1 (nothing leaves the machine), retries, an unreachable endpoint."
import json, socket, threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
import pytest
from clvq_nb.judge import Judge, JudgeError, OpenAIChat, judge_prompt, parse_ratings

KEY = 'sk-local-test-key'

class Handler(BaseHTTPRequestHandler):
    "Answers POST /v1/chat/completions: the scripted status codes first, then a rating reply; records what it received."
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers['Content-Length'])))
        self.server.seen.append((self.path, self.headers['Authorization'], body))
        status = self.server.statuses.pop(0) if self.server.statuses else 200
        reply = json.dumps(dict(choices=[dict(message=dict(role='assistant', content='{"A": 3, "B": 1}'))]) if status == 200 else dict(error='busy'))
        self.send_response(status); self.send_header('Content-Type', 'application/json'); self.end_headers(); self.wfile.write(reply.encode())
    def log_message(self, *args): pass

@pytest.fixture
def server():
    s = ThreadingHTTPServer(('127.0.0.1', 0), Handler); s.seen, s.statuses = [], []
    threading.Thread(target=s.serve_forever, daemon=True).start()
    yield s
    s.shutdown(); s.server_close()

def test_round_trip_with_retry(server, tmp_path, monkeypatch):
    monkeypatch.setenv('LOCAL_JUDGE_KEY', KEY); server.statuses = [503]
    waits = []
    judge = Judge(OpenAIChat(f'http://127.0.0.1:{server.server_port}/v1', 'm', key_env='LOCAL_JUDGE_KEY', batch_size=2), tmp_path/'cache', backoff=0.25, sleep=waits.append)
    p = judge_prompt('a fine film', 'positive', 'fine', {'B': 'the, a', 'A': 'good, fine'})
    assert parse_ratings(judge.ask([p])[0], p.keys) == dict(A=3, B=1)
    assert waits == [0.25] and len(server.seen) == 2  # the 503, then the answer
    path, auth, body = server.seen[-1]
    assert (path, auth, body['model'], body['messages'][1]['content']) == ('/v1/chat/completions', f'Bearer {KEY}', 'm', p.user)
    assert judge.ask([p]) and len(server.seen) == 2  # cached: not asked again
    assert not [f for f in (tmp_path/'cache').iterdir() if KEY in f.read_text()]

def test_unreachable_endpoint(tmp_path):
    with socket.socket() as s: s.bind(('127.0.0.1', 0)); port = s.getsockname()[1]  # closed again: nothing listens there
    waits = []
    judge = Judge(OpenAIChat(f'http://127.0.0.1:{port}/v1', 'm', key_env=None, timeout=5), tmp_path, retries=2, backoff=1, sleep=waits.append)
    with pytest.raises(JudgeError, match=rf'still failing after 3 tries: could not reach http://127.0.0.1:{port}/v1'): judge.ask([judge_prompt('x', 'positive', 'x', {'A': 'x'})])
    assert waits == [1, 2]

"""Hostile custom scripts (what a review found a script could do) and the host-side probes the tests use.

Each script reports what it managed in its result; the tests assert that none of it got out.
"""

from __future__ import annotations

import os
from pathlib import Path

# Put in the service's and the task workers' environment by the service fixture.
SENTINEL = "sentinel-4b1d-not-for-scripts"

HOSTILE = {
    # Its own environment and every other process's it can read.
    "steals_env": "import os, glob\n"
    "def process(df, params):\n"
    "    found = {'own': dict(os.environ), 'others': {}}\n"
    "    for path in glob.glob('/proc/*/environ'):\n"
    "        try:\n"
    "            found['others'][path] = open(path, 'rb').read().decode('latin-1')\n"
    "        except OSError as exc:\n"
    "            pass\n"
    "    found['pids'] = sorted(p for p in os.listdir('/proc') if p.isdigit())\n"
    "    return found\n",
    # The network: PostgreSQL with the trust login of the test server (and any TCP at all).
    "calls_out": "import socket\n"
    "def process(df, params):\n"
    "    out = {}\n"
    "    for port in (5432, 4200, params.get('api_port', 8000)):\n"
    "        try:\n"
    "            socket.create_connection(('127.0.0.1', port), timeout=3).close()\n"
    "            out[str(port)] = 'connected'\n"
    "        except OSError as exc:\n"
    "            out[str(port)] = type(exc).__name__\n"
    "    try:\n"
    "        import psycopg2\n"
    "        conn = psycopg2.connect(host='127.0.0.1', port=5432, user='postgres',\n"
    "                                dbname=params['database'], connect_timeout=3)\n"
    "        with conn.cursor() as cur:\n"
    "            cur.execute(\"UPDATE processing.results SET status = 'COMPLETED', \"\n"
    '                        "result_data = \'{\\"tampered\\": true}\' "\n'
    "                        \"WHERE id <> %s\", (params['own'],))\n"
    "        conn.commit()\n"
    "        out['postgres'] = 'tampered'\n"
    "    except Exception as exc:\n"
    "        out['postgres'] = type(exc).__name__\n"
    "    return out\n",
    # Files outside its temp dir: the host's /tmp, the scripts folder (a planted script), the bucket.
    "writes_out": "import os\n"
    "def process(df, params):\n"
    "    out = {}\n"
    "    for path in params['paths']:\n"
    "        try:\n"
    "            with open(path, 'w') as f:\n"
    "                f.write('def process(df, params):\\n    return {\"planted\": True}\\n')\n"
    "            out[path] = 'written'\n"
    "        except OSError as exc:\n"
    "            out[path] = type(exc).__name__\n"
    "    for path in ('/etc/shadow', '/etc/passwd'):\n"
    "        try:\n"
    "            out[path] = len(open(path).read())\n"
    "        except OSError as exc:\n"
    "            out[path] = type(exc).__name__\n"
    "    with open('own-file.txt', 'w') as f:\n"
    "        f.write('mine')\n"
    "    return out\n",
    # Children in a new session, named so the host can look for them; returns at once or outstays its limit.
    "forks_away": "import ctypes, os, time\n"
    "def process(df, params):\n"
    "    for _ in range(3):\n"
    "        if os.fork() == 0:\n"
    "            os.setsid()\n"
    "            if os.fork() == 0:\n"
    "                ctypes.CDLL(None).prctl(15, params['marker'].encode())  # PR_SET_NAME\n"
    "                time.sleep(600)\n"
    "            os._exit(0)\n"
    "    time.sleep(params.get('sleep', 0.5))\n"
    "    return {'forked': 3}\n",
    "allocates": "def process(df, params):\n"
    "    block = bytearray(10 * 1024 ** 3)\n"
    "    return {'allocated': len(block)}\n",
    "floods_stderr": "import sys\n"
    "def process(df, params):\n"
    "    line = 'x' * 1023 + '\\n'\n"
    "    for _ in range(params.get('mib', 300) * 1024):\n"
    "        sys.stderr.write(line)\n"
    "    print('the end of the flood')\n"
    "    return {'flooded_mib': params.get('mib', 300)}\n",
    "huge_result": "def process(df, params):\n    return {'x': 'a' * params.get('bytes', 100 * 1024 * 1024)}\n",
}


def processes_named(comm: str) -> list[int]:
    """Pids of the host's processes whose name (comm) is ``comm``."""
    pids = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                if (entry / "comm").read_text().strip() == comm[:15]:
                    pids.append(int(entry.name))
            except OSError:
                continue
    return pids


def parent_of(pid: int) -> int:
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat.rsplit(")", 1)[1].split()[1])


def job_process_of(script_pid: int) -> int:
    """The process running the job above a script (its task worker, or a deployment's flow-run process):
    the first ancestor that is neither bubblewrap nor the runner."""
    pid = parent_of(script_pid)
    while True:
        cmdline = Path(f"/proc/{pid}/cmdline").read_bytes()
        if b"bwrap" not in cmdline and b"custom_runner" not in cmdline:
            return pid
        pid = parent_of(pid)


def marker(prefix: str) -> str:
    """A process name unique to one test (15 characters at most)."""
    return f"{prefix}{os.getpid() % 10000}{os.urandom(3).hex()}"[:15]

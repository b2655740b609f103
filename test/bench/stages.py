#!/usr/bin/env python3
# stages.py BINARY PROFILE MESSAGES: one new ticket's CPU split by stage, from the CPU profile
# that `make bench` writes of its new-ticket burst (var/bench-newtickets.pprof), as the table
# in docs/benchmarks.md ("Issue 23") shows it. MESSAGES is how many messages the profile
# covers: the burst's rate times the profile's seconds (printed by `go tool pprof -top`).
#
#   python3 test/bench/stages.py bin/deskgate var/bench-newtickets.pprof 9500
#
# Each stage is the samples whose stack passes through its functions, so stages overlap
# (allocation happens inside all of them).
import re, subprocess, sys
binary, prof, n = sys.argv[1], sys.argv[2], int(sys.argv[3])
def secs(v):
    return float(v[:-2]) / 1000 if v.endswith('ms') else float(v[:-1])
def run(*args):
    return subprocess.run(['go', 'tool', 'pprof', '-top', '-nodecount=100000', '-nodefraction=0', '-edgefraction=0', *args, binary, prof], capture_output=True, text=True).stdout
total = secs(re.search(r'Total samples = ([0-9.]+m?s)', run()).group(1))
stages = [
    ("SMTP dialogue: accept, commands, replies", r'inbound\.\(\*Server\)\.accept|inbound\.\(\*session\)\.serve', r'readData|deliver'),
    ("reading DATA", r'inbound\.\(\*session\)\.readData', None),
    ("parsing MIME", r'mailparse\.Parse', None),
    ("sender authentication: SPF, DKIM, DMARC", r'desk\.\(\*Service\)\.authenticate', None),
    ("threading and rules", r'gateway/rules\.', None),
    ("composing the acknowledgement", r'gateway/compose\.', None),
    ("keeping the original: deflate", r'store\.PackOriginal', None),
    ("encoding records: JSON", r'encoding/json', None),
    ("planning on a snapshot: reads", r'store\.\(\*Store\)\.Plan', None),
    ("the commit on the writer: bbolt, fsync", r'store\.\(\*Store\)\.writer', None),
    ("  of which fdatasync", r'fdatasync', None),
    ("the relay: Maildir write, record", r'gateway/relay\.', None),
    ("metrics", r'prometheus', None),
    ("logging", r'log/slog', None),
    ("garbage collection, background", r'runtime\.gcBgMarkWorker', None),
    ("allocation, everywhere", r'runtime\.mallocgc$', None),
]
print("| stage | µs per message | share of the profile |")
print("|---|---|---|")
for name, focus, ignore in stages:
    args = ['-focus=' + focus] + (['-ignore=' + ignore] if ignore else [])
    m = re.search(r'accounting for ([0-9.]+m?s)', run(*args))
    s = secs(m.group(1)) if m else 0.0
    print(f"| {name} | {s*1e6/n:.0f} | {s*100/total:.1f} % |")
print(f"| all of deskgate in the profile | {total*1e6/n:.0f} | 100 % |")

"""The daemon's wake-up flag is set from signal handlers: a burst of signals while the main thread waits on
and clears it never blocks that thread (threading.Event does, within a second or so here)."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
import threading
import time

from conftest import PROJECT_ROOT

from nvr.wakeup import Wakeup

# The main thread does nothing but wait on and clear the flag, so the signals keep landing inside those calls.
WAITER = """
import signal, sys, time
from nvr.wakeup import Wakeup
flag = Wakeup()
handled = 0
def on_signal(*_):
    global handled
    handled += 1
    flag.set()
signal.signal(signal.SIGUSR1, on_signal)
print("ready", flush=True)
until = time.monotonic() + float(sys.argv[1])
woken = 0
while time.monotonic() < until:
    woken += flag.wait(0.00001)
    flag.clear()
signal.signal(signal.SIGUSR1, signal.SIG_IGN)  # the burst may outlast us: it must not kill the exit
print(handled, woken, flush=True)
"""


def test_set_wait_clear() -> None:
    flag = Wakeup()
    assert not flag.wait(0.01) and not flag.is_set()
    for _ in range(100_000):  # more than a pipe holds: set() never blocks, it stays set
        flag.set()
    assert flag.wait(0) and flag.is_set()
    flag.clear()
    assert not flag.is_set()
    flag.close()


def test_descriptors_past_1024() -> None:
    """A daemon with many cameras, sockets and files open can be past select()'s limit."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(soft, 1200), hard))
    spare = [os.open(os.devnull, os.O_RDONLY) for _ in range(1100)]
    try:
        flag = Wakeup()
        assert not flag.wait(0.01)
        flag.set()
        assert flag.wait(1)
        flag.close()
    finally:
        for fd in spare:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_a_signal_burst_never_blocks_the_waiting_thread() -> None:
    env = {**os.environ, "PYTHONPATH": str(PROJECT_ROOT)}
    child = subprocess.Popen(
        [sys.executable, "-c", WAITER, "3"], stdout=subprocess.PIPE, text=True, env=env
    )  # fmt: skip
    assert child.stdout is not None and child.stdout.readline() == "ready\n"
    sent = 0
    while child.poll() is None and sent < 50_000:
        try:
            os.kill(child.pid, signal.SIGUSR1)
        except ProcessLookupError:
            break
        sent += 1
        time.sleep(0.0001)
    try:
        out, _ = child.communicate(timeout=15)
    except subprocess.TimeoutExpired:
        child.kill()
        raise AssertionError(f"the waiting thread hung after {sent} signals") from None
    assert child.returncode == 0
    handled, woken = map(int, out.split())
    assert handled > 1000 and woken > 0, (sent, handled, woken)


def test_a_signal_landing_on_another_thread_wakes_the_main_thread() -> None:
    """The kernel gives a process's signal to any thread; the waiting main thread must still wake at once."""
    flag = Wakeup()
    handled: list[int] = []

    def on_signal(signum: int, _frame: object) -> None:
        handled.append(signum)
        flag.set()

    def send_from_this_thread() -> None:
        time.sleep(0.2)  # the main thread is in wait() by then
        signal.pthread_kill(threading.get_ident(), signal.SIGUSR2)

    previous = signal.signal(signal.SIGUSR2, on_signal)
    flag.wake_on_signals()
    sender = threading.Thread(target=send_from_this_thread)
    try:
        sender.start()
        # Without wake_on_signals the main thread sleeps through the signal until this timeout.
        assert flag.wait(10), "the main thread slept through a signal delivered to another thread"
        assert handled == [signal.SIGUSR2]
    finally:
        sender.join()
        flag.close()
        signal.signal(signal.SIGUSR2, previous)
    assert signal.set_wakeup_fd(-1) == -1  # close() gave the wake-up descriptor back

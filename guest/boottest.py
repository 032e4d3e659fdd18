#!/usr/bin/env python3
"""Boot the dom0 guest image under QEMU (TCG) and check it.

Usage: guest/boottest.py [--dir build/guest] [--runs N] [--memory MiB] [SCENARIO...]
Scenarios: boot powerdown poweroff reboot panic rootfs ide staticip ctrlc
(default: all). Each prints a PASS/FAIL line; exit status 1 if any failed.
Only user-mode networking with restrict=on is used (no traffic leaves QEMU).
"""
import argparse, json, os, socket, subprocess, sys, tempfile, threading, time

HERE = os.path.dirname(os.path.abspath(__file__))
EXTRA_ARGS = ''
MEMORY = '128'  # MiB, --memory


class Guest:
    def __init__(self, d, append='console=ttyS0 quiet', extra=()):
        self.tmp = tempfile.mkdtemp(prefix='dom0-boottest-')
        ss, qs = self.tmp + '/serial.sock', self.tmp + '/qmp.sock'
        cmd = ['qemu-system-x86_64', '-machine', 'pc', '-accel', 'tcg', '-m', MEMORY,
               '-smp', '1', '-nodefaults', '-no-user-config', '-display', 'none',
               '-device', 'pvpanic', '-kernel', d + '/vmlinuz', '-initrd', d + '/initrd.img',
               '-append', append,
               '-chardev', f'socket,id=s0,path={ss},server=on,wait=off', '-serial', 'chardev:s0',
               '-qmp', f'unix:{qs},server=on,wait=off', *extra]
        cmd[cmd.index('-append') + 1] += EXTRA_ARGS
        self.t0 = time.time()
        self.proc = subprocess.Popen(cmd, stdin=subprocess.DEVNULL)
        self.buf, self.pos, self.lock = bytearray(), 0, threading.Lock()
        self.ser = self._connect(ss)
        threading.Thread(target=self._reader, daemon=True).start()
        self.qmp = self._connect(qs)
        self.qf = self.qmp.makefile('rw')
        self.qf.readline()
        self.events = []
        self.qcmd('qmp_capabilities')

    def _connect(self, path):
        for _ in range(1000):
            try:
                s = socket.socket(socket.AF_UNIX)
                s.connect(path)
                return s
            except OSError:
                time.sleep(0.005)
        raise RuntimeError('cannot connect ' + path)

    def _reader(self):
        while True:
            try:
                d = self.ser.recv(65536)
            except OSError:
                return
            if not d:
                return
            with self.lock:
                self.buf.extend(d)

    def expect(self, pat, timeout=30):
        end = time.time() + timeout
        while time.time() < end:
            with self.lock:
                i = self.buf.find(pat, self.pos)
                if i >= 0:
                    out = bytes(self.buf[self.pos:i + len(pat)])
                    self.pos = i + len(pat)
                    return out.replace(b'\x1b[6n', b'').decode(errors='replace')
            time.sleep(0.005)
        raise RuntimeError(f'timeout waiting for {pat!r}')

    def run(self, cmd, timeout=20):
        self.ser.sendall(cmd.encode() + b'\n')
        out = self.expect(b'# ', timeout)
        return out.split('\n', 1)[1].rsplit('\n', 1)[0].replace('\r', '') if '\n' in out else ''

    def qcmd(self, name, **args):
        self.qf.write(json.dumps({'execute': name, **({'arguments': args} if args else {})}) + '\n')
        self.qf.flush()
        while True:
            r = json.loads(self.qf.readline())
            if 'event' in r:
                self.events.append(r['event'])
            else:
                return r.get('return')

    def wait_event(self, names, timeout=15):
        self.qmp.settimeout(timeout)
        try:
            for ev in self.events:
                if ev in names:
                    return ev
            while True:
                line = self.qf.readline()
                if not line:
                    return None
                ev = json.loads(line).get('event')
                self.events.append(ev)
                if ev in names:
                    return ev
        except (socket.timeout, OSError):
            return None

    def close(self):
        if self.proc.poll() is None:
            self.proc.kill()
        self.proc.wait()
        subprocess.run(['rm', '-rf', self.tmp])


def boot(d, **kw):
    g = Guest(d, **kw)
    g.expect(b'dom0-guest: boot complete', 60)
    g.expect(b'# ', 10)
    g.boot_time = time.time() - g.t0
    return g


def check(name, ok, detail=''):
    print(f"{'PASS' if ok else 'FAIL'} {name}{': ' + detail if detail else ''}", flush=True)
    return ok


def scenario(name, d):
    disk = ['-drive', f'file={d}/rootfs.ext4,if=none,id=d0,format=raw,snapshot=on',
            '-device', 'virtio-blk-pci,drive=d0']
    if name == 'boot':
        g = boot(d)
        try:
            mem, net = g.run('cat /proc/meminfo | head -1'), g.run('ls /sys/class/net')
            return check('boot', 'MemTotal' in mem, f'{g.boot_time:.2f}s to prompt; {mem.split()[1:2]} kB; net: {net.split()}')
        finally:
            g.close()
    if name in ('powerdown', 'poweroff', 'reboot', 'panic'):
        g = boot(d, extra=['-action', 'panic=pause'] if name == 'panic' else [])
        try:
            t = time.time()
            if name == 'powerdown':
                g.qcmd('system_powerdown')
            else:
                g.ser.sendall({'poweroff': b'poweroff\n', 'reboot': b'reboot\n',
                               'panic': b'echo c > /proc/sysrq-trigger\n'}[name])
            want = {'powerdown': 'SHUTDOWN', 'poweroff': 'SHUTDOWN', 'reboot': 'RESET',
                    'panic': 'GUEST_PANICKED'}[name]
            ev = g.wait_event({want})
            dt = time.time() - t
            extra = ''
            if name == 'panic' and ev:
                extra = ', status ' + g.qcmd('query-status')['status']
            if name == 'reboot' and ev:
                g.expect(b'dom0-guest: boot complete', 60)
                extra = ', booted again'
            if want == 'SHUTDOWN' and ev:
                g.proc.wait(5)
                extra = f', qemu exit {g.proc.returncode}'
            return check(name, ev == want, f'{ev} after {dt:.2f}s{extra}')
        finally:
            g.close()
    if name in ('rootfs', 'ide'):
        if name == 'rootfs':
            g = boot(d, append='console=ttyS0 quiet root=/dev/vda', extra=disk)
            dev = '/dev/vda'
        else:
            g = boot(d, append='console=ttyS0 quiet root=/dev/sda',
                     extra=['-drive', f'file={d}/rootfs.ext4,if=ide,format=raw,snapshot=on'])
            dev = '/dev/sda'
        try:
            m = g.run('grep " / " /proc/mounts')
            return check(name, m.startswith(dev + ' / ext4'), f'{g.boot_time:.2f}s; {m.strip()}')
        finally:
            g.close()
    if name == 'staticip':
        g = boot(d, append='console=ttyS0 quiet ip=10.0.2.15::10.0.2.2:255.255.255.0:myhost:eth0:off',
                 extra=['-netdev', 'user,id=n0,restrict=on', '-device', 'virtio-net-pci,netdev=n0'])
        try:
            h, a = g.run('hostname'), g.run('ip -4 addr show eth0')
            return check(name, h.strip() == 'myhost' and '10.0.2.15/24' in a,
                         f'hostname={h.strip()} prompt={g.run("").strip()!r}')
        finally:
            g.close()
    if name == 'ctrlc':
        g = boot(d)
        try:
            g.ser.sendall(b'sleep 30\n')
            time.sleep(1)
            t = time.time()
            g.ser.sendall(b'\x03')
            g.expect(b'# ', 5)
            rc = g.run('echo rc=$?')
            return check(name, 'rc=130' in rc, f'prompt back after {time.time() - t:.2f}s, {rc.strip()}')
        finally:
            g.close()
    raise SystemExit('unknown scenario ' + name)


def main():
    p = argparse.ArgumentParser()
    p.add_argument('--dir', default=os.path.join(HERE, '..', 'build', 'guest'))
    p.add_argument('--runs', type=int, default=1, help='repeat the boot-time scenario')
    p.add_argument('--args', default='', help='extra kernel arguments, e.g. cryptomgr.notests')
    p.add_argument('--memory', default='128', help='guest memory in MiB (default %(default)s)')
    p.add_argument('scenarios', nargs='*')
    a = p.parse_args()
    global EXTRA_ARGS, MEMORY
    MEMORY = a.memory
    EXTRA_ARGS = (' ' + a.args) if a.args else ''
    d = os.path.abspath(a.dir)
    names = a.scenarios or ['boot', 'powerdown', 'poweroff', 'reboot', 'panic', 'rootfs',
                            'ide', 'staticip', 'ctrlc']
    ok = True
    for n in names:
        for _ in range(a.runs if n == 'boot' else 1):
            try:
                ok &= scenario(n, d)
            except Exception as e:  # noqa: BLE001
                ok &= check(n, False, repr(e))
    sys.exit(0 if ok else 1)


if __name__ == '__main__':
    main()

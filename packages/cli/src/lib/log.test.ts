import { afterEach, describe, expect, it } from "vitest";
import { Output, type Sink, terminalSafe } from "./log.js";

/** A sink that keeps what is written; `isTTY` says whether it plays a terminal. */
function sink(isTTY: boolean): Sink & { text: string } {
  const s = {
    text: "",
    isTTY,
    write(t: string) {
      s.text += t;
    },
  };
  return s;
}

const saved = { NO_COLOR: process.env.NO_COLOR, TERM: process.env.TERM };
afterEach(() => {
  for (const [name, value] of Object.entries(saved)) {
    if (value === undefined) delete process.env[name];
    else process.env[name] = value;
  }
});

describe("Output", () => {
  it("colours a terminal and shows long work as a spinner that other lines print above", async () => {
    delete process.env.NO_COLOR;
    process.env.TERM = "xterm-256color";
    const err = sink(true);
    const output = new Output(sink(true), err);
    const step = output.progress("bundling 2 services");
    await new Promise((r) => setTimeout(r, 200));
    output.warn("slow disk");
    step.done("bundled 2 services");
    // Escape characters shown as "~", so the expectations stay readable.
    const shown = err.text.split("\u001b").join("~");
    expect(shown).toContain("⠋");
    expect(shown).toMatch(/\r~\[K~\[36m\S~\[0m bundling 2 services/);
    expect(shown).toContain("~[33mwarning:~[0m slow disk\n");
    expect(shown).toMatch(/~\[32m✓~\[0m bundled 2 services ~\[2m\(0\.\d s\)~\[0m\n$/);
  });

  it("writes plain lines, without escapes or spinners, under NO_COLOR, --plain, or to a pipe", () => {
    for (const [tty, plain, noColor] of [
      [true, false, true],
      [true, true, false],
      [false, false, false],
    ] as const) {
      if (noColor) process.env.NO_COLOR = "1";
      else delete process.env.NO_COLOR;
      const err = sink(tty);
      const output = new Output(sink(tty), err, plain);
      const step = output.progress("collecting resources from 1 service");
      output.error("boom");
      step.done("collected 2 resources");
      expect(err.text).toBe("collecting resources from 1 service...\nerror: boom\n");
    }
  });
});

describe("terminalSafe", () => {
  it("writes control characters as \\u escapes, but tabs, line feeds and colours, and leaves the rest", () => {
    expect(terminalSafe("\u001b]0;pwned\u0007\u001b[2Jclear")).toBe("\\u001b]0;pwned\\u0007\\u001b[2Jclear");
    expect(terminalSafe("a\tb\nc\rd\u007f\u0085\u009b")).toBe("a\tb\nc\\u000dd\\u007f\\u0085\\u009b");
    expect(terminalSafe('{"text":"héllo 👋"}')).toBe('{"text":"héllo 👋"}');
    expect(terminalSafe("\u0000")).toBe("\\u0000");
    // A colour passes (a service's coloured log); a sequence that only looks like one does not.
    expect(terminalSafe("\u001b[1;31mred\u001b[0m")).toBe("\u001b[1;31mred\u001b[0m");
    expect(terminalSafe("\u001b[31;1H")).toBe("\\u001b[31;1H");
  });

  it("is what Output writes to a terminal, and not to a pipe", () => {
    const tty: string[] = [];
    const pipe: string[] = [];
    const onTerminal = new Output({ write: (t: string) => tty.push(t), isTTY: true }, { write: () => {}, isTTY: true });
    const onPipe = new Output({ write: (t: string) => pipe.push(t) }, { write: () => {} });
    onTerminal.result("x\u001b]52;c;cHduZWQ=\u0007");
    onPipe.result("x\u001b]52;c;cHduZWQ=\u0007");
    expect(tty).toEqual(["x\\u001b]52;c;cHduZWQ=\\u0007\n"]);
    expect(pipe).toEqual(["x\u001b]52;c;cHduZWQ=\u0007\n"]);
  });
});

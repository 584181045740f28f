import { mkdirSync, mkdtempSync, rmSync, writeFileSync } from "node:fs";
import { tmpdir } from "node:os";
import { join, relative } from "node:path";
import fc from "fast-check";
import { afterEach, describe, expect, it } from "vitest";
import { LIMIT_KEYS } from "./limits.js";
import {
  findServices,
  globToRegExp,
  loadProject,
  ProjectError,
  socketDomainOf,
  unusedSocketWarnings,
} from "./project.js";

const dirs: string[] = [];
function project(files: Record<string, string>): string {
  const dir = mkdtempSync(join(tmpdir(), "nitric-like-project-"));
  dirs.push(dir);
  for (const [path, text] of Object.entries(files)) {
    mkdirSync(join(dir, path, ".."), { recursive: true });
    writeFileSync(join(dir, path), text);
  }
  return dir;
}
afterEach(() => {
  for (const d of dirs.splice(0)) rmSync(d, { recursive: true, force: true });
});

describe("globToRegExp", () => {
  it("matches one folder level with * and any depth with **", () => {
    expect(globToRegExp("services/*.ts").test("services/chat.ts")).toBe(true);
    expect(globToRegExp("services/*.ts").test("services/a/chat.ts")).toBe(false);
    expect(globToRegExp("services/**/*.ts").test("services/chat.ts")).toBe(true);
    expect(globToRegExp("services/**/*.ts").test("services/a/b/chat.ts")).toBe(true);
    expect(globToRegExp("./services/?.ts").test("services/a.ts")).toBe(true);
    expect(globToRegExp("services/*.ts").test("services/chat.tsx")).toBe(false);
  });

  it("matches any literal path exactly, whatever characters it has", () => {
    fc.assert(
      fc.property(fc.stringMatching(/^[a-zA-Z0-9.+()$^{}|[\] _-]{1,20}$/), (name) => {
        expect(globToRegExp(name).test(name)).toBe(true);
        expect(globToRegExp(name).test(`${name}x`)).toBe(false);
      }),
    );
  });
});

describe("loadProject", () => {
  it("reads nitric-like.yaml, and nitric.yaml for Nitric projects", () => {
    const a = loadProject(
      project({
        "nitric-like.yaml": "name: a\nservices:\n  - match: services/*.ts\nwebsockets:\n  socket:\n    port: 4100\n",
      }),
    );
    expect(a).toMatchObject({
      name: "a",
      services: [{ match: "services/*.ts" }],
      websockets: { socket: { port: 4100 } },
    });
    const b = loadProject(
      project({ "nitric.yaml": "name: b\nservices:\n  - match: services/*.ts\n    start: node $SERVICE_PATH\n" }),
    );
    expect(b).toMatchObject({ name: "b", services: [{ match: "services/*.ts", start: "node $SERVICE_PATH" }] });
  });

  it("reads a nitric.yaml as Nitric's CLI writes it, with its runtimes, preview and empty batch-services and websites", () => {
    const nitric = [
      "name: my-websocket-app",
      "services:",
      '  - basedir: ""',
      "    match: services/*.ts",
      "    runtime: node",
      "    type: ''",
      "    start: npm run dev:services $SERVICE_PATH",
      "batch-services: []",
      "websites: []",
      "runtimes:",
      "  node:",
      "    dockerfile: ./node.dockerfile",
      '    context: ""',
      "    args: {}",
      "preview:",
      "  - websockets",
      "",
    ].join("\n");
    const loaded = loadProject(project({ "nitric.yaml": nitric, "services/chat.ts": "" }));
    expect(loaded).toMatchObject({
      name: "my-websocket-app",
      services: [{ match: "services/*.ts", start: "npm run dev:services $SERVICE_PATH" }],
    });
    expect(findServices(loaded).map((s) => s.file)).toEqual(["services/chat.ts"]);
  });

  it("refuses Nitric batch services, websites and a service basedir, each with the fix", () => {
    const dir = project({
      "nitric.yaml": [
        "name: app",
        "services:",
        "  - basedir: ./backend",
        "    match: ./services/*.ts",
        "batch-services:",
        "  - match: batches/*.ts",
        "websites:",
        "  - basedir: ./web",
        "",
      ].join("\n"),
    });
    let problems: readonly string[] = [];
    try {
      loadProject(dir);
    } catch (error) {
      if (!(error instanceof ProjectError)) throw error;
      problems = error.problems.map((p) => p.replace(/^.*nitric\.yaml: /, ""));
    }
    expect(problems).toEqual([
      "batch-services lists Nitric batch services (jobs), which nitric-like does not run; remove them and their job() declarations, or leave batch-services: []",
      "websites lists Nitric websites, which nitric-like does not serve; serve the site elsewhere and remove it, or leave websites: []",
      "services[0].basedir \"./backend\": nitric-like matches services from the project's folder; put the folder in match instead (match: backend/services/*.ts) and remove basedir (a start command runs in the project's folder too)",
    ]);
  });

  it("says what to write when the file is missing or wrong", () => {
    expect(() => loadProject(project({}))).toThrow(/no project file found, create nitric-like.yaml/);
    // From inside a project's folder: the project, not a second project file.
    const inside = project({
      "nitric-like.yaml": "name: x\nservices:\n  - match: services/*.ts\n",
      "services/a.ts": "",
    });
    expect(() => loadProject(join(inside, "services"))).toThrow(
      `no project file here; it is inside the project in ${relative(process.cwd(), inside) || "."} (nitric-like.yaml): give that folder`,
    );
    expect(() => loadProject(project({ "nitric-like.yaml": "services: []\n" }))).toThrow(/"name" is required/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: x\n" }))).toThrow(/"services" is required/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: x\nservices:\n  - start: x\n" }))).toThrow(
      /services\[0\] needs a "match" glob/,
    );
    expect(() =>
      loadProject(
        project({ "nitric-like.yaml": "name: x\nservices:\n  - match: a\nwebsockets:\n  s:\n    port: 99999\n" }),
      ),
    ).toThrow(/websockets\.s\.port must be a port number/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: [unclosed\n" }))).toThrow(/not valid YAML/);
    expect(() => loadProject(project({ "nitric-like.yaml": "name: x\nservices:\n  match: a\n" }))).toThrow(
      /"services" must be a list of entries, each starting with "-"/,
    );
  });
});

describe("findServices", () => {
  it("names each service after its file and skips node_modules", () => {
    const dir = project({
      "nitric-like.yaml": "name: x\nservices:\n  - match: services/**/*.ts\n",
      "services/chat.ts": "",
      "services/admin/audit.ts": "",
      "services/node_modules/dep/index.ts": "",
    });
    expect(findServices(loadProject(dir)).map((s) => [s.name, s.file])).toEqual([
      ["audit", "services/admin/audit.ts"],
      ["chat", "services/chat.ts"],
    ]);
  });

  it("gives each service its entry's memory, and refuses memory Lambda would not take, with the fix", () => {
    const dir = project({
      "nitric-like.yaml":
        "name: x\nservices:\n  - match: services/big/*.ts\n    memory: 2048\n  - match: services/*.ts\n",
      "services/chat.ts": "",
      "services/big/report.ts": "",
    });
    expect(findServices(loadProject(dir)).map((s) => [s.name, s.memory])).toEqual([
      ["chat", undefined],
      ["report", 2048],
    ]);
    for (const bad of ["100", "10241", "512.5", '"1GB"']) {
      const wrong = project({
        "nitric-like.yaml": `name: x\nservices:\n  - match: services/*.ts\n    memory: ${bad}\n`,
      });
      expect(() => loadProject(wrong)).toThrow(
        `nitric-like.yaml: services[0].memory is ${JSON.stringify(bad.startsWith('"') ? "1GB" : Number(bad))}: give each of these services' function memory on AWS as a whole number of MB from 128 to 10240 (Lambda's MemorySize), such as "memory: 1024"`,
      );
    }
  });

  it("refuses two services with the same name and a glob that matches nothing", () => {
    const clash = project({
      "nitric-like.yaml": "name: x\nservices:\n  - match: services/**/*.ts\n",
      "services/a.ts": "",
      "services/b/a.ts": "",
    });
    expect(() => findServices(loadProject(clash))).toThrow(/two services are named "a"/);
    const none = project({ "nitric-like.yaml": "name: x\nservices:\n  - match: services/*.ts\n" });
    expect(() => findServices(loadProject(none))).toThrow(/"services\/\*\.ts" matches no file/);
  });
});

describe("a strict project file", () => {
  const problemsOf = (yaml: string): readonly string[] => {
    try {
      loadProject(project({ "nitric-like.yaml": yaml }));
    } catch (error) {
      if (error instanceof ProjectError) return error.problems.map((p) => p.replace(/^.*nitric-like\.yaml: /, ""));
      throw error;
    }
    return [];
  };

  it("refuses every unknown key at every level, all at once, saying what was meant", () => {
    const problems = problemsOf(
      [
        "name: app",
        "services:",
        "  - match: services/*.ts",
        "    env: { A: b }",
        "websocket:",
        "  socket: { port: 4000 }",
        "websockets:",
        "  chat:",
        "    prot: 4000",
        "    limits: { idleTimout: 1m }",
        "idleTimeout: 5m",
        "environments:",
        "  prod:",
        "    limit: {}",
        "    websockets: { chat: { limit: {} } }",
        "",
      ].join("\n"),
    );
    expect(problems).toEqual([
      "websocket is not a setting; did you mean websockets?",
      "idleTimeout is a limit, not a setting here; put it under limits:",
      "services[0].env is not a setting; services[0] takes match, start, memory",
      "websockets.chat.prot is not a setting; did you mean websockets.chat.port?",
      `websockets.chat.limits.idleTimout is not a limit; did you mean idleTimeout? The limits are ${LIMIT_KEYS.join(", ")}`,
      "environments.prod.limit is not a setting; did you mean environments.prod.limits?",
      "environments.prod.websockets.chat.limit is not a setting; did you mean environments.prod.websockets.chat.limits?",
    ]);
  });

  it("knows every limit limits.ts defines, and suggests each from a typo", () => {
    for (const key of LIMIT_KEYS) {
      expect(problemsOf(`name: a\nservices:\n  - match: s\nlimits:\n  ${key.slice(0, -1)}: 1\n`)[0]).toMatch(
        new RegExp(`is not a limit; did you mean ${key}\\?`),
      );
    }
  });

  it("wants a name CloudFormation takes as a stack name, suggesting one", () => {
    expect(problemsOf("name: My App\nservices:\n  - match: s\n")).toEqual([
      'name "My App" cannot be a stack name: it must start with a letter and have only letters, digits and hyphens; use name: my-app',
    ]);
    expect(problemsOf("name: 2048\nservices:\n  - match: s\n")).toEqual(["name 2048 must be text; use name: app-2048"]);
    expect(problemsOf("name: Café\nservices:\n  - match: s\n")[0]).toMatch(/use name: cafe$/);
    expect(problemsOf('name: "2048"\nservices:\n  - match: s\n')[0]).toMatch(/use name: app-2048$/);
    expect(problemsOf(`name: a${"b".repeat(128)}\nservices:\n  - match: s\n`)[0]).toMatch(
      /is 129 characters long; at most 128 fit a stack name/,
    );
    expect(problemsOf("name: Chat-2\nservices:\n  - match: s\n")).toEqual([]);
  });

  it("lists value problems with key problems, and refuses invalid socket names", () => {
    expect(
      problemsOf(
        "name: my_app\nservices:\n  - match: s\nwebsockets:\n  My Socket: { port: -1 }\nlimits:\n  idleTimeout: 10\n",
      ),
    ).toEqual([
      'name "my_app" cannot be a stack name: it must start with a letter and have only letters, digits and hyphens; use name: my-app',
      'websockets.My Socket: websocket("My Socket"): invalid resource name "My Socket", use lower-kebab-case such as "my-socket"',
      "websockets.My Socket.port must be a port number from 0 to 65535, got -1",
      "limits.idleTimeout is 10: use a duration from 1ms to 168h with its unit (ms, s, m, h), such as 10m",
    ]);
  });

  it("reads compat: aws, and refuses any other platform and a misspelt key with the fix", () => {
    const dir = project({ "nitric-like.yaml": "name: a\nservices:\n  - match: s\ncompat: aws\n" });
    expect(loadProject(dir).compat).toBe("aws");
    expect(loadProject(project({ "nitric-like.yaml": "name: a\nservices:\n  - match: s\n" })).compat).toBeUndefined();
    expect(problemsOf("name: a\nservices:\n  - match: s\ncompat: gcp\n")).toEqual([
      'compat "gcp" is not a platform whose rules the local provider keeps; use compat: aws, or leave it out for the local rules',
    ]);
    expect(problemsOf("name: a\nservices:\n  - match: s\ncompta: aws\n")).toEqual([
      "compta is not a setting; did you mean compat?",
    ]);
  });

  it("reads a socket's custom domain, and an environment's over it", () => {
    const cert = "arn:aws:acm:eu-west-1:123456789012:certificate/0a1b2c3d-4e5f-6789-abcd-ef0123456789";
    const staging = "arn:aws:acm:eu-west-1:123456789012:certificate/11111111-2222-3333-4444-555555555555";
    const p = loadProject(
      project({
        "nitric-like.yaml": [
          "name: a",
          "services:\n  - match: s",
          "websockets:",
          "  chat:",
          "    domain:",
          "      name: ws.example.com",
          `      certificate: ${cert}`,
          "      hostedZone: Z0123456789ABCDEFGHIJ",
          "  other: {}",
          "environments:",
          "  staging:",
          `    websockets: { chat: { domain: { name: ws-staging.example.com, certificate: "${staging}" } } }`,
          "  dev:",
          "    websockets: { chat: { domain: null } }",
          "",
        ].join("\n"),
      }),
    );
    expect(socketDomainOf(p, "chat")).toEqual({
      name: "ws.example.com",
      certificate: cert,
      hostedZone: "Z0123456789ABCDEFGHIJ",
    });
    expect(socketDomainOf(p, "chat", "prod")).toEqual(socketDomainOf(p, "chat"));
    expect(socketDomainOf(p, "chat", "staging")).toEqual({ name: "ws-staging.example.com", certificate: staging });
    expect(socketDomainOf(p, "other")).toBeUndefined();
    // domain: null turns the socket's own off in that environment.
    expect(socketDomainOf(p, "chat", "dev")).toBeUndefined();
    expect(socketDomainOf(p, "nowhere", "staging")).toBeUndefined();
  });

  it("refuses a domain that is not a host name, a certificate that is not an ACM ARN, a bad hosted zone, and one domain on two sockets", () => {
    const cert = "arn:aws:acm:us-east-1:123456789012:certificate/abc";
    const file = (sockets: string) => `name: a\nservices:\n  - match: s\nwebsockets:\n${sockets}`;
    expect(
      problemsOf(
        file(
          [
            `  a: { domain: { name: WS.Example.com, certificate: ${cert} } }`,
            `  b: { domain: { name: "*.example.com", certificate: ${cert} } }`,
            `  c: { domain: { name: localhost, certificate: ${cert} } }`,
            `  d: { domain: { name: a..b.com, certificate: ${cert} } }`,
            `  e: { domain: { name: -x.example.com, certificate: ${cert} } }`,
            "  f: { domain: { name: ws.example.org, certificate: arn:aws:iam::123456789012:role/x } }",
            `  g: { domain: { name: g.example.org, certificate: ${cert}, hostedZone: /hostedzone/Z123 } }`,
            `  h: { domain: { name: h.example.org, certificate: ${cert}, hostedZone: zone } }`,
            "  i: { domain: { certificate: 7 } }",
            "  j: { domain: ws.example.com }",
            `  k: { domain: { name: k.example.org, certificate: ${cert}, zone: Z1 } }`,
            `  l: { domain: { name: 10.0.0.1, certificate: ${cert} } }`,
            "",
          ].join("\n"),
        ),
      ),
    ).toEqual([
      'websockets.a.domain.name: "WS.Example.com" has upper-case letters; DNS names are written in lower case: ws.example.com',
      'websockets.b.domain.name: "*.example.com" is a wildcard; a socket needs one name of its own; use a host name you own, such as ws.example.com',
      'websockets.c.domain.name: "localhost" is not a full host name; use a host name you own, such as ws.example.com',
      'websockets.d.domain.name: "a..b.com" is not a host name: an empty label (labels are 1 to 63 letters, digits and inner hyphens); use a host name you own, such as ws.example.com',
      'websockets.e.domain.name: "-x.example.com" is not a host name: the label "-x" (labels are 1 to 63 letters, digits and inner hyphens); use a host name you own, such as ws.example.com',
      "websockets.f.domain.certificate: \"arn:aws:iam::123456789012:role/x\" is not an ACM certificate's ARN (arn:aws:acm:<region>:<account>:certificate/<id>); request or import one for the domain in the stack's region (AWS Certificate Manager) and give its ARN",
      'websockets.g.domain.hostedZone: "/hostedzone/Z123": give the id alone: Z123',
      'websockets.h.domain.hostedZone: "zone" is not a Route 53 hosted zone id (Z and upper-case letters and digits, such as Z0123456789ABCDEFGHIJ); leave hostedZone out to add the DNS record yourself',
      "websockets.i.domain.name is required, such as\n  domain:\n    name: ws.example.com\n    certificate: arn:aws:acm:us-east-1:123456789012:certificate/...",
      "websockets.i.domain.certificate: 7 must be text",
      "websockets.j.domain must be a mapping with name and certificate, such as\n  domain:\n    name: ws.example.com\n    certificate: arn:aws:acm:us-east-1:123456789012:certificate/...",
      "websockets.k.domain.zone is not a setting; websockets.k.domain takes name, certificate, hostedZone",
      'websockets.l.domain.name: "10.0.0.1" is an address, not a host name; use a host name you own, such as ws.example.com',
    ]);
    expect(
      problemsOf(
        `${file(`  a: { domain: { name: ws.example.com, certificate: ${cert} } }\n  b: {}\n`)}environments:\n  prod:\n    websockets: { b: { domain: { name: ws.example.com, certificate: ${cert} } } }\n`,
      ),
    ).toEqual([
      "in environment prod, sockets a and b both have the domain ws.example.com; a domain serves one socket, so give each its own name",
    ]);
  });

  it("warns about a socket configured in the file that no service declares, with the nearest declared one", () => {
    const p = loadProject(
      project({
        "nitric-like.yaml":
          "name: a\nservices:\n  - match: s\nwebsockets:\n  chta: { port: 4000 }\n  socket: {}\nenvironments:\n  prod:\n    websockets: { lobby: {} }\n",
      }),
    );
    expect(unusedSocketWarnings(p, ["chat", "socket"])).toEqual([
      'nitric-like.yaml: websockets.chta configures a socket no service declares (websocket("chta")), so its settings apply to nothing; did you mean chat?',
      'nitric-like.yaml: environments.prod.websockets.lobby configures a socket no service declares (websocket("lobby")), so its settings apply to nothing; the declared ones are chat, socket',
    ]);
    expect(unusedSocketWarnings(p, ["chta", "socket", "lobby"])).toEqual([]);
  });
});

/**
 * What `up` checks of a template's custom domains before it uploads anything: API Gateway fails
 * a stack half-way (and a first deploy into ROLLBACK_COMPLETE, which only `down` clears) when a
 * domain's certificate is of another region, not issued yet, or does not cover the name, or when
 * the hosted zone given for its record is not there or holds other names. Each problem is one
 * sentence with the fix.
 */
import { ACMClient, type CertificateDetail, DescribeCertificateCommand } from "@aws-sdk/client-acm";
import { GetHostedZoneCommand, Route53Client } from "@aws-sdk/client-route-53";
import { certificateRegion, type Logger, type SocketDomain } from "@nitric-like/spec";
import { clientConfig, deployTimeouts, failedCall, watched } from "./calls.js";

/** Whether a certificate name (`ws.example.com`, or a wildcard `*.example.com`) covers `name`. */
export function certificateCovers(certName: string, name: string): boolean {
  const cert = certName.toLowerCase().replace(/\.$/, "");
  if (cert === name) return true;
  // A wildcard covers one label, no more and no fewer (RFC 6125 as ACM issues them).
  if (!cert.startsWith("*.")) return false;
  const dot = name.indexOf(".");
  return dot > 0 && name.slice(dot + 1) === cert.slice(2);
}

/** Whether a hosted zone named `zone` (`example.com.`) may hold a record for `name`. */
export function zoneHolds(zone: string, name: string): boolean {
  const z = zone.toLowerCase().replace(/\.$/, "");
  return name === z || name.endsWith(`.${z}`);
}

/**
 * The problems of each domain, region first (no call needed), then ACM's word on the certificate
 * and Route 53's on the zone. A call that is not allowed (AccessDenied) or fails otherwise is a
 * warning, not a problem: the deploy goes on, and CloudFormation has the last word.
 */
export async function domainProblems(
  domains: readonly SocketDomain[],
  stack: string,
  region: string,
  logger?: Logger,
): Promise<{ problems: string[]; warnings: string[] }> {
  const problems: string[] = [];
  const warnings: string[] = [];
  if (domains.length === 0) return { problems, warnings };
  const timeouts = deployTimeouts();
  const acm = watched(new ACMClient(clientConfig(region, timeouts, logger)), "ACM", timeouts, logger);
  const route53 = watched(new Route53Client(clientConfig(region, timeouts, logger)), "ROUTE_53", timeouts, logger);
  try {
    for (const domain of domains) {
      const theirs = certificateRegion(domain.certificate);
      if (theirs !== undefined && theirs !== region) {
        problems.push(
          `the certificate of domain ${domain.name} is in ${theirs}, but stack "${stack}" deploys to ${region}: API Gateway serves a WebSocket API's domain only with a certificate of the API's region; request or import one in ${region} (AWS Certificate Manager) and give its ARN as the socket's domain.certificate, or deploy to ${theirs} (--region ${theirs})`,
        );
        continue;
      }
      const certificate = await checkCertificate(acm, domain);
      if (certificate.problem) problems.push(certificate.problem);
      if (certificate.warning) warnings.push(certificate.warning);
      if (domain.hostedZone === undefined) continue;
      const zone = await checkZone(route53, domain, domain.hostedZone);
      if (zone.problem) problems.push(zone.problem);
      if (zone.warning) warnings.push(zone.warning);
    }
  } finally {
    acm.destroy();
    route53.destroy();
  }
  return { problems, warnings };
}

type Check = { problem?: string; warning?: string };

/** ACM's word on a domain's certificate: there, issued, and covering the name. */
async function checkCertificate(acm: ACMClient, domain: SocketDomain): Promise<Check> {
  const arn = domain.certificate;
  let certificate: CertificateDetail | undefined;
  try {
    certificate = (await acm.send(new DescribeCertificateCommand({ CertificateArn: arn }))).Certificate;
  } catch (error) {
    // No answer (or Ctrl-C while waiting for one): the network, not the certificate; the deploy stops.
    if (failedCall(error)) throw error;
    const name = (error as Error).name;
    if (name === "ResourceNotFoundException")
      return {
        problem: `the certificate of domain ${domain.name} is not in this account and region (${arn}); request or import one (AWS Certificate Manager) and give its ARN as the socket's domain.certificate`,
      };
    return {
      warning: `could not check the certificate of domain ${domain.name} (${name}: ${(error as Error).message}); deploying anyway`,
    };
  }
  const status = certificate?.Status ?? "";
  if (status !== "ISSUED") {
    const why =
      status === "PENDING_VALIDATION"
        ? "ACM issues it once the DNS record it asks for exists (aws acm describe-certificate --certificate-arn <arn> shows the record); run up again once it is ISSUED"
        : "give the ARN of an issued certificate for the name";
    return {
      problem: `the certificate of domain ${domain.name} is ${status || "in no known state"}, not ISSUED: ${why}`,
    };
  }
  const names = [...new Set([certificate?.DomainName ?? "", ...(certificate?.SubjectAlternativeNames ?? [])])].filter(
    (n) => n !== "",
  );
  if (!names.some((n) => certificateCovers(n, domain.name)))
    return {
      problem: `the certificate of domain ${domain.name} covers ${names.join(", ") || "no name"}, not ${domain.name}: give the ARN of a certificate for ${domain.name} (or for *.${domain.name.slice(domain.name.indexOf(".") + 1)})`,
    };
  return {};
}

/** Route 53's word on the hosted zone of a domain's record: there, and holding the name. */
async function checkZone(route53: Route53Client, domain: SocketDomain, id: string): Promise<Check> {
  let zone: string | undefined;
  try {
    zone = (await route53.send(new GetHostedZoneCommand({ Id: id }))).HostedZone?.Name;
  } catch (error) {
    if (failedCall(error)) throw error;
    const name = (error as Error).name;
    if (name === "NoSuchHostedZone")
      return {
        problem: `hosted zone ${id} of domain ${domain.name} is not in this account; give the id of the Route 53 zone that holds ${domain.name}, or leave hostedZone out and make the DNS record yourself`,
      };
    return {
      warning: `could not check hosted zone ${id} of domain ${domain.name} (${name}: ${(error as Error).message}); deploying anyway`,
    };
  }
  if (zone !== undefined && !zoneHolds(zone, domain.name))
    return {
      problem: `hosted zone ${id} is ${zone.replace(/\.$/, "")}, which cannot hold ${domain.name}; give the id of the zone of ${domain.name} (or of a parent of it)`,
    };
  return {};
}

#!/usr/bin/env python3
"""Removes each security check in turn and asserts that some test fails without it.

Slow (one rebuild per mutation), so it is not part of scripts/test; run it after touching a
check: `python3 scripts/mutation-check.py [filter]`. Each row: file, the check as written,
the same code with the check disabled.
"""
import pathlib
import subprocess
import sys

ROOT = pathlib.Path(__file__).resolve().parent.parent

MUTATIONS = [
    ("common/src/jwt.rs", "if signature.is_empty() {", "if false {"),
    ("common/src/jwt.rs", "if algorithm != algorithm_name(expect.algorithm) {", "if false {"),
    ("common/src/jwt.rs", "if !key_fits(jwk, expect.algorithm) {", "if false {"),
    ("common/src/jwt.rs", "    let claims = jsonwebtoken::decode::<serde_json::Map<String, serde_json::Value>>(\n        token,\n        &key,\n        &signature_only,\n    )",
     "    let _ = (&key, &signature_only);\n    let claims = jsonwebtoken::insecure_decode::<serde_json::Map<String, serde_json::Value>>(token)"),
    ("common/src/jwt.rs", "if issuer != expect.issuer {", "if false {"),
    ("common/src/jwt.rs", "if !audience_matches {", "if false {"),
    ("common/src/jwt.rs", "if now >= number(\"exp\")?.saturating_add(leeway) {", "if false {"),
    ("common/src/jwt.rs", "if expect.require_not_before && number(\"nbf\")? > now.saturating_add(leeway) {", "if false {"),
    ("common/src/jwt.rs", "if number(\"iat\")? > now.saturating_add(leeway) {", "if false {"),
    ("common/src/jwt.rs", "expect.leeway_seconds.min(MAX_LEEWAY_SECONDS)", "expect.leeway_seconds"),
    ("common/src/iap.rs", ".and_then(|e| Email::parse(e).ok())", ".and_then(|e| Email::parse(e.trim_start_matches('<')).ok().or(Email::parse(\"x@y.z\").ok()))"),
    ("common/src/iap.rs", "algorithm: Algorithm::ES256,", "algorithm: Algorithm::RS256,"),
    ("common/src/iap.rs", "jwt::check_claims(&seen.claims, &expectations(audience, now, leeway_seconds))", "Ok::<(), JwtError>(())"),
    ("common/src/iap.rs", "            entries.retain(|_, entry| !entry.expired(now));\n", ""),
    ("common/src/iap.rs", "        if entries.len() >= self.capacity {\n            entries.retain", "        if false {\n            entries.retain"),
    ("common/src/token.rs", "if claims.reviewers.is_empty() {", "if false {"),
    ("common/src/token.rs", "require_not_before: true,", "require_not_before: false,"),
    ("common/src/activation.rs", "if condition.title != ACTIVATION_TITLE {", "if false {"),
    ("common/src/activation.rs", "let [member] = binding.members.as_slice() else {", "let [member, ..] = binding.members.as_slice() else {"),
    ("common/src/activation.rs", "if start.replace(at).is_some() {", "if false {"),
    ("common/src/activation.rs", ".take(MAX_DESCRIPTION_CHARS)", ".take(usize::MAX)"),
    ("common/src/policy.rs", "existing.member == activation.beneficiary\n                && ", ""),
    ("common/src/policy.rs", "    if policy.bindings.iter().any(same_access) {\n        return ActivationUpdate::AlreadyPresent;\n    }\n", ""),
    ("common/src/condition.rs", "                top.has_or_or_conditional = true;\n            }\n            // `?`", "            }\n            // `?`"),
    ("common/src/condition.rs", "            Some(ActivationType::Jit) => activation_type = Some(ActivationType::Jit),", "            Some(ActivationType::Jit) => activation_type = activation_type.or(Some(ActivationType::Jit)),"),
    ("common/src/justification.rs", "if trimmed.chars().any(char::is_control) {", "if false {"),
    ("common/src/justification.rs", "if trimmed.chars().count() > MAX_JUSTIFICATION_CHARS {", "if false {"),
    ("common/src/justification.rs", "format!(\"^(?:{pattern})$\")", "format!(\"^{pattern}$\")"),
    ("common/src/email.rs", "if !local.chars().all(allowed_local) {", "if false {"),
    ("common/src/entitlement.rs", "Some(ResourceCondition::parse(&text)?)", "Some(ResourceCondition::from_clauses(&[text]).ok_or_else(refuse)?)"),
    ("common/src/config.rs", "if min_reviewers > max_reviewers {", "if false {"),
    ("common/src/rules.rs", "    if &request.beneficiary == caller {\n        return Err(Refusal::SelfApproval);", "    if false {\n        return Err(Refusal::SelfApproval);"),
    ("common/src/rules.rs", "if !request.reviewers.contains(caller) {\n        return Err(Refusal::NotAReviewer", "if false {\n        return Err(Refusal::NotAReviewer"),
    ("common/src/rules.rs", "if request.window.status(now) == WindowStatus::Ended {", "if false {"),
    ("common/src/rules.rs", "let justification = settings.justification.check(&request.justification)?;", "let justification = settings.justification.check(\".\").expect(\"x\"); let _ = &request.justification;"),
    ("common/src/rules.rs", "if minutes > settings.max_activation_minutes {", "if false {"),
    ("common/src/rules.rs", "if !holders.contains(&request.beneficiary) {", "if false {"),
    ("common/src/rules.rs", "if !holders.contains(caller) {", "if false {"),
    ("common/src/rules.rs", "if unique.contains(requester) {", "if false {"),
    ("common/src/rules.rs", "if let Some(stranger) = unique.iter().find(|reviewer| !holders.contains(reviewer)) {", "if let Some(stranger) = unique.iter().find(|_| false) {"),
    ("common/src/rules.rs", "if entitlement.activation_type != expected {", "if false {"),
    ("common/src/rules.rs", "if &request.beneficiary == caller || request.reviewers.contains(caller) {", "if true {"),
    ("common/src/rules.rs", "if minutes == 0 || minutes > max {", "if false {"),
    ("common/src/rules.rs", "if parsed.len() as u64 > settings.max_roles {", "if false {"),
    ("common/src/rules.rs", "if id.project() != project {", "if false {"),
]


def main() -> int:
    only = sys.argv[1] if len(sys.argv) > 1 else ""
    survivors = []
    for path, original, mutated in MUTATIONS:
        if only and only not in path and only not in original:
            continue
        file = ROOT / path
        text = file.read_text()
        if text.count(original) != 1:
            print(f"STALE  {path}: check not found once: {original!r}")
            survivors.append((path, original))
            continue
        file.write_text(text.replace(original, mutated))
        try:
            result = subprocess.run(
                ["cargo", "test", "-q", "-p", "common", "--lib"],
                cwd=ROOT, capture_output=True, text=True,
            )
        finally:
            file.write_text(text)
        verdict = "caught" if result.returncode != 0 else "SURVIVED"
        print(f"{verdict:8} {path}: {original.splitlines()[0].strip()[:70]}")
        if result.returncode == 0:
            survivors.append((path, original))
    print(f"{len(survivors)} of the checks above survived removal")
    return 1 if survivors else 0


if __name__ == "__main__":
    sys.exit(main())

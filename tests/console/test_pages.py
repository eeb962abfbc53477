"""What an auditor sees on each page, in a real browser with JavaScript off."""

from __future__ import annotations

import csv
import io
import re

import httpx
import yaml
from playwright.sync_api import Page, expect

from gateway.audit.signing import load_public_key
from gateway.audit.verify import verify_export
from tests.console.conftest import ADMIN_KEY, TRAFFIC, sign_in
from tests.harness import Gateway, PolicyDir

REFUSED = sum(1 for *_, outcome in TRAFFIC if outcome == "refused") * 2


def test_overview_shows_traffic_refusals_in_words_policy_and_writer(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway.base)
    expect(page.locator("#total")).to_have_text(str(len(TRAFFIC) * 2))
    revision = httpx.get(gateway.base + "/ready").json()["policy_revision"]
    expect(page.locator("#revision")).to_have_text(revision)
    expect(page.locator("#writer-state")).to_have_text("Recording")
    refusals = page.locator("table.bars", has_text="Refusals by rule")
    expect(refusals).to_contain_text(
        "The operator and its controlling companies are in allowed jurisdictions [operator_control]"
    )
    expect(refusals).to_contain_text(
        "The deployment is self-hosted, for data classified 'secret' "
        "[data_class[secret].self_hosted]"
    )
    expect(
        page.locator("svg[aria-label='Requests by inference country over time']")
    ).to_be_visible()
    expect(page.locator("table.bars", has_text="Requests by tenant")).to_contain_text("eu-bank")


def test_filter_records_then_open_one_with_its_explanation_and_proof(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway.base, path="/console/records")
    page.fill("input[name=tenant]", "eu-bank")
    page.select_option("select[name=decision]", "refused")
    page.click("#filters button[type=submit]")
    rows = page.locator("#records tbody tr")
    expect(rows).to_have_count(4)
    for i in range(4):
        expect(rows.nth(i)).to_contain_text("eu-bank")
        expect(rows.nth(i).locator(".pill")).to_have_text("refused")
    secret = rows.filter(has_text="llama-3.1-8b").first
    expect(secret).to_contain_text("The deployment is self-hosted, for data classified 'secret'")
    secret.locator("text=Details").click()

    expect(page.locator("#verdict")).to_contain_text("the policy allowed none of its deployments")
    expect(page.locator("section.candidate.eligible")).to_have_count(0)
    failing = (
        page.locator("section.candidate tr", has_text="data_class[secret].self_hosted")
        .filter(has_text="fail")
        .first
    )
    expect(failing).to_contain_text("The deployment is self-hosted, for data classified 'secret'")
    expect(failing).to_contain_text("is operated by")  # the engine's reason, in words
    expect(page.locator("#proof-result")).to_have_text(
        "Verified: this record is in the signed log, unchanged."
    )
    path = page.locator("#proof-path li")
    assert path.count() >= 1
    assert all(re.fullmatch(r"[0-9a-f]{64}", t) for t in path.all_text_contents())


def test_an_allowed_record_shows_its_attempts_and_the_deployment_facts(
    page: Page, gateway: Gateway
) -> None:
    sign_in(page, gateway.base, path="/console/records?tenant=fr-public-body&decision=allowed")
    page.locator("#records tbody tr").first.locator("text=Details").click()
    facts = page.locator("#deployment-facts")
    expect(facts).to_contain_text("mistral-small@")
    expect(facts).to_contain_text("Control chain")
    expect(page.locator("h2:has-text('Attempts') + table")).to_contain_text("ok")
    eligible = page.locator("section.candidate.eligible").first
    expect(eligible.locator("tr", has_text="inference_country")).to_contain_text("pass")


def test_records_page_by_page_cover_everything_once(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, path="/console/records")
    seen = page.locator("#records tbody tr td:first-child").all_inner_texts()
    assert len(seen) == len(TRAFFIC) * 2
    expect(page.locator(".pager")).to_contain_text("End of the log.")


def test_csv_export_holds_the_filtered_records(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, path="/console/records?decision=refused")
    href = page.locator("#export-csv").get_attribute("href")
    assert href is not None
    response = page.request.get(gateway.base + href)
    assert response.headers["content-type"].startswith("text/csv")
    rows = list(csv.DictReader(io.StringIO(response.text())))
    assert len(rows) == REFUSED
    assert {r["decision"] for r in rows} == {"refused"}
    assert any("data_class[secret].self_hosted" in r["refusing_rules"] for r in rows)


def test_tenant_export_verifies_offline(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, path="/console/records?tenant=eu-bank")
    href = page.locator("#export-tenant").get_attribute("href")
    assert href is not None
    export = page.request.get(gateway.base + href).body()
    key = httpx.get(
        gateway.base + "/audit/public-key",
        headers={"authorization": "Bearer sk-sgw-demoauditor-demo-key-not-a-secret"},
    ).content
    report = verify_export(export.splitlines(), load_public_key(key))
    assert report.ok, report.failures
    assert report.records == 6


def test_verify_now_runs_the_verification_on_the_server(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, path="/console/integrity")
    logs = page.locator("#logs tbody tr")
    expect(logs).to_have_count(1)
    expect(logs.first).to_contain_text("valid, this gateway's key")
    expect(page.locator("#fingerprint")).to_have_text(
        re.compile(r"^([0-9a-f]{4}:){15}[0-9a-f]{4}$")
    )
    page.click("#verify-now")
    result = page.locator("#verification")
    expect(result).to_contain_text("verified")
    expect(result).not_to_contain_text("NOT verified")
    expect(result).to_contain_text(f"{len(TRAFFIC) * 2} records")


def test_the_residency_report_prints_without_the_menus(page: Page, gateway: Gateway) -> None:
    sign_in(page, gateway.base, path="/console/report")
    page.select_option("select[name=tenant]", "eu-bank")
    page.click("form.filters button[type=submit]")
    report = page.locator("#report")
    expect(page.locator("#report-total")).to_have_text("6")
    expect(report).to_contain_text("France (FR)")
    expect(report).to_contain_text("operator_control")
    expect(report).to_contain_text("The operator and its controlling companies")
    expect(report).to_contain_text("it is covered by the checkpoint of")
    page.emulate_media(media="print")
    expect(page.locator("header.top")).to_be_hidden()
    expect(page.locator("form.filters")).to_be_hidden()
    expect(report).to_be_visible()
    pdf = page.pdf(format="A4")
    assert pdf.startswith(b"%PDF")


def test_policy_matrix_and_what_a_reload_changed(
    page: Page, gateway: Gateway, policies: PolicyDir
) -> None:
    sign_in(page, gateway.base, path="/console/policy")
    eu_bank = page.locator("#tenant-eu-bank")
    gpt = eu_bank.locator("tr[data-model='gpt-4o'] td")
    expect(gpt).to_contain_text("refused")
    expect(gpt).to_contain_text("The operator and its controlling companies")
    expect(eu_bank.locator("tr[data-model='mistral-small'] td")).to_contain_text("mistral-small@")
    expect(page.locator("#tenant-fr-public-body")).to_contain_text(
        "Not on this tenant's list of models, so always refused"
    )
    expect(page.locator("body")).to_contain_text("No earlier revision was loaded")

    tenant = policies.path / "tenants" / "acme-dev.yaml"
    data = yaml.safe_load(tenant.read_text())
    data["models"] = ["mistral-*"]  # was every model
    tenant.write_text(yaml.safe_dump(data))
    r = httpx.post(
        gateway.base + "/admin/policy/reload", headers={"authorization": f"Bearer {ADMIN_KEY}"}
    )
    assert r.status_code == 200, r.text
    page.reload()
    changes = page.locator("#changes")
    lost = changes.locator("tr", has_text="acme-dev").filter(has_text="gpt-4o").first
    expect(lost.locator("td").nth(4)).to_contain_text("gpt-4o@")
    expect(page.locator("#policy-revision")).to_have_text(r.json()["revision"])

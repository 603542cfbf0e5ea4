"""The web dashboard in a real headless Chromium (Debian's, driven by Playwright) against a real
3-peer cluster: sign in, peers and nodes, an instance registered through the API appearing
live, services grouped by slug, search, sorting, an instance's detail and its deregistration,
record text that carries markup, 401 and 403, the layout at 800 px, peers killed while the page
is open (down peers, one leader, the majority warning, the page moving to a live peer), and
screenshots.

Needs /usr/bin/chromium (`apt-get install chromium`; .ci/run installs it) and the Python
package playwright (the tox env `ui` installs it); without either the tests fail, saying so.
"""

import os
import re

import pytest

from api import tokens
from tests.cluster.conftest import running_cluster

pytestmark = [pytest.mark.ui, pytest.mark.timeout(300)]

CHROMIUM = os.environ.get("REGISTRY_UI_CHROMIUM", "/usr/bin/chromium")
CHROMIUM_ARGS = [
    "--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
    "--disable-background-networking", "--disable-component-update", "--disable-sync",
]
TOKEN_KEY = "registry-svc.token"
EXPECT_TIMEOUT_MS = 20_000
XSS_DETAILS = '<img src=x onerror="window.__xss = 1">'
XSS_TAG = "<b>bold</b>"

INSTANCES = [
    {"id": "web-1", "url": "http://127.10.0.1:8080", "slug": "web", "status": "Healthy", "tags": ["prod", "eu"]},
    {"id": "web-2", "url": "http://127.10.0.2:8080", "slug": "web", "status": "Healthy", "tags": ["staging"]},
    {"id": "api-1", "url": "http://127.10.1.1:9000", "slug": "api", "status": "Degraded", "tags": ["prod"],
     "details": "slow answers"},
    {"id": "api-2", "url": "http://127.10.1.2:9000", "slug": "api", "status": "Error", "tags": ["staging"]},
    {"id": "evil", "url": "http://127.10.9.9:80", "slug": "evil", "status": "Unreachable", "details": XSS_DETAILS,
     "tags": [XSS_TAG]},
]
ALL_IDS = [record["id"] for record in INSTANCES]


def _playwright():
    try:
        from playwright import sync_api
    except ImportError:
        pytest.fail("the Python package playwright is not installed: run these tests with `tox -e ui`, "
                    "or `pip install playwright` (only its bundled driver is used)", pytrace=False)
    return sync_api


@pytest.fixture(scope="module")
def cluster(tmp_path_factory):
    """A real 3-peer cluster; every process is stopped by pid afterwards, pass or fail."""
    with running_cluster(tmp_path_factory.mktemp("ui-cluster")) as cluster:
        yield cluster


@pytest.fixture(scope="module")
def browser(tmp_path_factory):
    """Debian's Chromium with a fresh profile, headless; fails (never skips) when it is missing."""
    if not (os.path.isfile(CHROMIUM) and os.access(CHROMIUM, os.X_OK)):
        pytest.fail(f"{CHROMIUM} is missing: the dashboard tests drive Debian's Chromium. Install it with "
                    "`apt-get install -y chromium` (.ci/run does), or point REGISTRY_UI_CHROMIUM at one.",
                    pytrace=False)
    sync_api = _playwright()
    sync_api.expect.set_options(timeout=EXPECT_TIMEOUT_MS)
    with sync_api.sync_playwright() as playwright:
        context = playwright.chromium.launch_persistent_context(
            str(tmp_path_factory.mktemp("chromium-profile")), executable_path=CHROMIUM, headless=True,
            args=CHROMIUM_ARGS, viewport={"width": 1400, "height": 1000},
        )
        try:
            yield context
        finally:
            context.close()


@pytest.fixture
def page(browser):
    """A fresh tab (so a fresh sessionStorage) that records uncaught errors and CSP refusals."""
    tab = browser.new_page()
    tab.problems = []
    tab.requests = []
    tab.on("pageerror", lambda error: tab.problems.append(f"uncaught error: {error}"))
    tab.on("console", lambda message: tab.problems.append(f"console: {message.text}")
           if "Content Security Policy" in message.text or "Refused to" in message.text else None)
    tab.on("request", lambda request: tab.requests.append(request.url))
    yield tab
    tab.close()


@pytest.fixture(scope="module")
def artifacts(tmp_path_factory):
    """Where screenshots go: the tox env's directory when run by tox, else pytest's temp dir."""
    directory = os.path.join(os.environ["TOX_ENV_DIR"], "artifacts") if os.environ.get("TOX_ENV_DIR") \
        else str(tmp_path_factory.mktemp("artifacts"))
    os.makedirs(directory, exist_ok=True)
    return directory


def sign_in(page, url, token):
    expect = _playwright().expect
    page.goto(url + "/ui")
    expect(page.locator("#login")).to_be_visible()
    page.fill("#token", token)
    page.click("#login-form button[type=submit]")


def register(cluster, peer, record):
    response = cluster.put_instance(peer, record)
    assert response.status_code == 201, response.text


def expect_rows(page, ids):
    """The instance table shows exactly these ids (waiting for the live view to settle)."""
    expect = _playwright().expect
    rows = page.locator("#instance-rows tr.instance")
    expect(rows).to_have_count(len(ids))
    for instance_id in ALL_IDS:
        expect(page.locator(f'#instance-rows tr.instance[data-id="{instance_id}"]')).to_have_count(
            1 if instance_id in ids else 0)
    expect(rows).to_have_count(len(ids))


def test_dashboard_shows_the_cluster_and_follows_instances_live(cluster, page, artifacts, capsys):
    expect = _playwright().expect
    served_by, writer = cluster.peers[0], cluster.peers[1]
    token = cluster.local.admin_token

    sign_in(page, served_by.url, token)
    expect(page.locator("#login")).to_be_hidden()
    expect(page.locator("#dashboard")).to_be_visible()

    # Three peers, the leader marked, the serving peer named.
    leader = cluster.leader()
    expect(page.locator("#peer-rows tr.peer")).to_have_count(3)
    marked = page.locator("#peer-rows tr.is-leader")
    expect(marked).to_have_count(1)
    expect(marked).to_have_attribute("data-raft", leader.raft)
    expect(marked.locator(".badge.leader")).to_have_text("★ leader")
    expect(page.locator(f'#peer-rows tr[data-raft="{served_by.raft}"]')).to_contain_text("this peer")
    for peer in cluster.peers:
        row = page.locator(f'#peer-rows tr[data-raft="{peer.raft}"]')
        expect(row).to_contain_text(peer.url)
        expect(row.locator(".badge.up")).to_have_text("up")
    expect(page.locator("#quorum")).to_be_hidden()

    # Three nodes, each with CPU, memory and disk bars.
    expect(page.locator("#node-cards article.node")).to_have_count(3)
    for peer in cluster.peers:
        card = page.locator(f'#node-cards article.node[data-url="{peer.url}"]')
        expect(card.locator(".status")).to_have_text("Healthy")
        for label in ("CPU", "Memory", "Disk"):
            meter = card.get_by_role("meter", name=label, exact=True)
            expect(meter).to_have_attribute("aria-valuenow", re.compile(r"^\d{1,3}\.\d$"))
            width = meter.locator(".fill").evaluate("fill => fill.style.width")
            assert re.fullmatch(r"\d{1,3}(\.\d)?%", width), width
        expect(card).to_contain_text("no GPUs")

    # The token is kept in this tab's session storage, and a reload stays signed in.
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") == token
    page.reload()
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#login")).to_be_hidden()

    # An instance registered through the API (at another peer) appears without a reload.
    expect(page.locator("#instance-rows")).to_contain_text("No instances match.")
    register(cluster, writer, INSTANCES[0])
    row = page.locator('#instance-rows tr[data-id="web-1"]')
    expect(row).to_be_visible()
    expect(row).to_contain_text("http://127.10.0.1:8080")
    expect(row.locator(".status")).to_have_class(re.compile(r"\bstatus-Healthy\b"))
    for record in INSTANCES[1:]:
        register(cluster, writer, record)
    expect_rows(page, ALL_IDS)
    expect(page.locator("#instance-count")).to_have_text("5 instances in 3 services")

    # Status colours come from the stylesheet (so the CSP let it load).
    colours = {
        status: page.locator(f"#instance-rows .status-{status}").first.evaluate(
            "badge => getComputedStyle(badge).backgroundColor")
        for status in ("Healthy", "Degraded", "Error", "Unreachable")
    }
    assert len(set(colours.values())) == 4, colours

    # Markup in a record is shown as text and runs nothing.
    evil = page.locator('#instance-rows tr[data-id="evil"]')
    expect(evil.locator("td.details")).to_have_text(XSS_DETAILS)
    expect(evil.locator(".tag")).to_have_text(XSS_TAG)
    expect(page.locator("#instance-rows img")).to_have_count(0)
    expect(page.locator("#instance-rows b")).to_have_count(0)
    assert page.evaluate("window.__xss") is None

    # Screenshot of the whole dashboard with every instance.
    expect(page.locator("#node-cards article.node")).to_have_count(3)
    screenshot = os.path.join(artifacts, "dashboard.png")
    page.screenshot(path=screenshot, full_page=True)
    with capsys.disabled():
        print(f"\ndashboard screenshot: {screenshot}")

    # Filters: a search (substrings, here of ids), status, tags (all must match), combined, cleared.
    page.fill("#filter-search", "api")
    expect_rows(page, ["api-1", "api-2"])
    page.select_option("#filter-status", "Error")
    expect_rows(page, ["api-2"])
    page.click("#filter-clear")
    expect_rows(page, ALL_IDS)
    page.select_option("#filter-status", "Healthy")
    expect_rows(page, ["web-1", "web-2"])
    page.select_option("#filter-status", "")
    page.fill("#filter-tags", "prod")
    expect_rows(page, ["web-1", "api-1"])
    page.fill("#filter-tags", "prod, eu")
    expect_rows(page, ["web-1"])
    page.fill("#filter-tags", "nothing-has-this")
    expect(page.locator("#instance-rows")).to_contain_text("No instances match.")
    expect_rows(page, [])

    # A filtered view stays live: a matching registration appears.
    page.fill("#filter-tags", "")
    page.fill("#filter-search", "web")
    expect_rows(page, ["web-1", "web-2"])
    register(cluster, writer, {"id": "web-3", "url": "http://127.10.0.3:8080", "slug": "web", "status": "Healthy"})
    expect(page.locator('#instance-rows tr[data-id="web-3"]')).to_be_visible()
    expect(page.locator("#instance-rows tr.instance")).to_have_count(3)

    # Instances and nodes were watched with blocking reads, not polled.
    for path in ("/registry-svc/instances", "/registry-svc/nodes"):
        blocking = [url for url in page.requests if path in url and "index=" in url and "wait=30s" in url]
        assert blocking, f"no blocking read of {path} among {page.requests}"
    assert not page.problems, page.problems


def test_gpus_show_utilisation_and_memory(cluster, page, artifacts):
    """No GPU here: the real node list passes through the browser with two GPUs added to one node."""
    expect = _playwright().expect
    target = cluster.peers[2].url
    gpus = [
        {"id": f"{target}:0", "intraNodeId": 0, "name": "NVIDIA H100 80GB HBM3", "gpuUtilization": 87.0,
         "memoryUsage": 30000, "memoryTotal": 81559, "temperature": 61, "powerUsage": 412.5, "powerCap": 700.0,
         "performanceState": "P0", "processDetails": [{"pid": 4242, "processName": "python", "memoryUsage": 30000}]},
        {"id": f"{target}:1", "intraNodeId": 1, "name": "<i>NVIDIA</i> H100", "gpuUtilization": None,
         "memoryUsage": None, "memoryTotal": None, "processDetails": []},
    ]

    def add_gpus(route):
        response = route.fetch(timeout=60_000)
        body = response.json()
        for node in body.get("nodes", []):
            if node.get("url") == target:
                node["gpus"] = gpus
        route.fulfill(response=response, json=body)

    page.route(re.compile(r"/registry-svc/nodes(\?|$)"), add_gpus)
    sign_in(page, cluster.peers[0].url, cluster.local.admin_token)
    card = page.locator(f'#node-cards article.node[data-url="{target}"]')
    expect(card.locator(".gpu")).to_have_count(2)
    first, second = card.locator(".gpu").nth(0), card.locator(".gpu").nth(1)
    expect(first).to_contain_text("NVIDIA H100 80GB HBM3")
    expect(first.get_by_role("meter", name="GPU utilisation")).to_have_attribute("aria-valuenow", "87.0")
    expect(first.get_by_role("meter", name="GPU memory")).to_have_attribute("aria-valuetext", "30000 / 81559 MiB")
    expect(first).to_contain_text("61 °C")
    expect(first).to_contain_text("1 process")
    expect(second).to_contain_text("<i>NVIDIA</i> H100")
    expect(second.locator("i")).to_have_count(0)
    expect(second.get_by_role("meter", name="GPU utilisation")).to_have_attribute("aria-valuetext", "n/a")
    expect(page.locator("#node-cards .gpu")).to_have_count(2)  # the other nodes have none
    # Each heartbeat (1 s here) renders the cards anew, which can detach the element while an
    # element screenshot waits for it to settle: shoot the page where the card is instead.
    page.screenshot(path=os.path.join(artifacts, "node-with-gpus.png"), clip=card.bounding_box())
    assert not page.problems, page.problems


def test_a_refused_token_asks_again(cluster, page):
    expect = _playwright().expect
    url = cluster.peers[1].url
    login_error = page.locator("#login-error")

    # A token of another cluster.
    foreign = tokens.mint(tokens.signing_key("not this cluster's secret"), "admin", ["admin"], 3600)
    sign_in(page, url, foreign)
    expect(page.locator("#login")).to_be_visible()
    expect(login_error).to_contain_text("401")
    expect(login_error).to_contain_text("signature does not match")
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    # A token that expires while the dashboard is open: the dashboard asks again.
    short = cluster.token("admin", "admin", ttl=6)
    page.fill("#token", short)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#dashboard")).to_be_visible()
    expect(page.locator("#login")).to_be_visible(timeout=30_000)
    expect(login_error).to_contain_text("expired")
    expect(page.locator("#dashboard")).to_be_hidden()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None

    # Signing in again works, and signing out forgets the token.
    page.fill("#token", cluster.local.admin_token)
    page.click("#login-form button[type=submit]")
    expect(page.locator("#peer-rows tr.peer")).to_have_count(3)
    page.click("#sign-out")
    expect(page.locator("#login")).to_be_visible()
    assert page.evaluate(f"sessionStorage.getItem('{TOKEN_KEY}')") is None
    assert not page.problems, page.problems


def test_a_token_without_permissions_sees_why(cluster, page):
    expect = _playwright().expect
    sign_in(page, cluster.peers[2].url, cluster.token("visitor", "guest"))
    expect(page.locator("#dashboard")).to_be_visible()
    for section, permission in (("peers", "node:view"), ("nodes", "node:view"), ("instances", "instance:view")):
        box = page.locator(f"#{section} [data-error]")
        expect(box).to_be_visible()
        expect(box).to_contain_text("403")
        expect(box).to_contain_text(f"registry-svc:{permission}")
    expect(page.locator("#login")).to_be_hidden()
    assert not page.problems, page.problems



def test_services_are_grouped_searched_sorted_and_an_instance_opens_with_its_actions(cluster, page, artifacts):
    """Runs after the first test registered its instances (web-1..3, api-1..2, evil)."""
    expect = _playwright().expect
    sign_in(page, cluster.peers[1].url, cluster.local.admin_token)
    groups = page.locator("#instance-rows tr.group")
    expect(groups).to_have_count(3)
    expect(page.locator('#instance-rows tr.group[data-slug="api"] .badge')).to_have_text("0 of 2 healthy")
    expect(page.locator('#instance-rows tr.group[data-slug="web"] .badge')).to_have_text("3 of 3 healthy")
    assert [g.get_attribute("data-slug") for g in groups.all()] == ["api", "evil", "web"]

    # Rows of a group follow the sort: worst status first by default, then by id, url, heartbeat.
    def ids_in_order():
        return [row.get_attribute("data-id") for row in page.locator("#instance-rows tr.instance").all()]
    expect(page.locator("#instance-rows tr.instance")).to_have_count(6)
    assert ids_in_order()[:2] == ["api-2", "api-1"]  # Error before Degraded
    page.select_option("#sort", "id")
    expect(page.locator("#instance-rows tr.instance").first).to_have_attribute("data-id", "api-1")
    assert ids_in_order() == ["api-1", "api-2", "evil", "web-1", "web-2", "web-3"]
    page.select_option("#sort", "heartbeat")  # newest first: web-3 was registered last
    expect(page.locator('#instance-rows tr.group[data-slug="web"] + tr.instance')).to_have_attribute("data-id", "web-3")

    # The search takes substrings of the slug, id, url, tags and details, case aside.
    page.fill("#filter-search", "SLOW")
    expect(page.locator("#instance-rows tr.instance")).to_have_count(1)
    expect(page.locator("#instance-rows tr.instance")).to_have_attribute("data-id", "api-1")
    page.fill("#filter-search", "eb-")
    expect(page.locator("#instance-rows tr.instance")).to_have_count(3)
    expect(page.locator("#instance-count")).to_have_text("3 instances in 1 service")

    # Times read relative, the timestamp in the title.
    cell = page.locator('#instance-rows tr[data-id="web-1"] .ago')
    expect(cell).to_have_text(re.compile(r"^\d+[smh] ago$"))
    assert re.fullmatch(r"\d{4}-\d\d-\d\dT.*Z", cell.get_attribute("title"))

    # An instance's detail: every field it has.
    page.fill("#filter-search", "")
    page.click('#instance-rows tr[data-id="api-1"]')
    detail = page.locator("#instance-detail")
    expect(detail).to_be_visible()
    expect(page.locator("#detail-title")).to_have_text("Instance api-1")
    expect(detail.locator('dd[data-field="port"]')).to_have_text("9000")
    expect(detail.locator('dd[data-field="slug"]')).to_have_text("api")
    expect(detail.locator('dd[data-field="details"]')).to_have_text("slow answers")
    expect(detail.locator('dd[data-field="lastHeartbeat"]')).to_contain_text("ago")
    page.screenshot(path=os.path.join(artifacts, "instance-detail.png"), full_page=True)

    # Deregistering asks first: dismissed, nothing happens; accepted, the instance goes.
    questions = []

    def answer(dialog, accept):
        questions.append(dialog.message)
        dialog.accept() if accept else dialog.dismiss()
    page.once("dialog", lambda dialog: answer(dialog, False))
    detail.locator('[data-action="deregister"]').click()
    expect(page.locator('#instance-rows tr[data-id="api-1"]')).to_have_count(1)
    page.once("dialog", lambda dialog: answer(dialog, True))
    detail.locator('[data-action="deregister"]').click()
    expect(page.locator('#instance-rows tr[data-id="api-1"]')).to_have_count(0)
    expect(detail).to_be_hidden()
    assert len(questions) == 2 and questions[0].startswith("Deregister instance api-1 (http://127.10.1.1:9000)?")
    assert cluster.get(cluster.peers[1], "/registry-svc/instances?id=api-1").json() == {"instances": []}
    assert not page.problems, page.problems


def test_a_token_is_offered_only_the_actions_it_may_take(cluster, page):
    expect = _playwright().expect
    register(cluster, cluster.peers[0], {"id": "mine-1", "url": "http://127.10.2.1:80", "slug": "team-a"})
    sign_in(page, cluster.peers[0].url, cluster.token("team-a", "user"))
    row = page.locator('#instance-rows tr[data-id="mine-1"]')
    expect(row).to_be_visible()
    expect(page.locator("#instance-rows tr.instance")).to_have_count(1)  # a user sees its own slug's
    row.click()
    expect(page.locator("#instance-detail")).to_be_visible()
    expect(page.locator('#detail-actions [data-action="close"]')).to_be_visible()
    # The default permits give users no instance:delete: no Deregister button.
    expect(page.locator('#detail-actions [data-action="deregister"]')).to_have_count(0)
    assert not page.problems, page.problems


def test_the_layout_holds_at_800_pixels(cluster, page, artifacts):
    expect = _playwright().expect
    register(cluster, cluster.peers[0], {"id": "layout-1", "url": "http://127.10.3.1:8443/a/long/path/to/see/it/wrap",
                                         "slug": "layout", "tags": ["prod", "eu-west-1", "tier-frontend"],
                                         "details": "a long text " * 20})
    page.set_viewport_size({"width": 800, "height": 1000})
    sign_in(page, cluster.peers[0].url, cluster.local.admin_token)
    expect(page.locator("#instance-rows tr.instance").first).to_be_visible()
    expect(page.locator("#node-cards article.node")).to_have_count(3)
    expect(page.locator("#instances th.col-wide").first).to_be_hidden()
    assert page.evaluate("document.documentElement.scrollWidth") <= 800
    for box in page.locator("main .card, main .table-wrap").all():
        if box.is_visible():  # nothing spills out of a card, and no table needs scrolling sideways
            spill = box.evaluate("box => box.scrollWidth - box.clientWidth")
            assert spill <= 1, (box.get_attribute("id") or box.get_attribute("class"), spill)
    page.screenshot(path=os.path.join(artifacts, "dashboard-800px.png"), full_page=True)
    assert not page.problems, page.problems


def test_peers_killed_while_the_page_is_open(tmp_path_factory, page, artifacts):
    """Its own cluster: the leader dies (one leader shown, the dead one down, the majority one
    failure from lost), then the page's own peer dies (the page moves to the last live peer,
    still signed in, and says there is no majority)."""
    expect = _playwright().expect
    with running_cluster(tmp_path_factory.mktemp("ui-kill")) as cluster:
        leader = cluster.leader()
        watched, survivor = [p for p in cluster.peers if p is not leader]
        sign_in(page, watched.url, cluster.local.admin_token)
        expect(page.locator("#peer-rows tr.peer .badge.up")).to_have_count(3)
        expect(page.locator('#node-cards .badge.leader')).to_have_count(1)

        cluster.local.kill_peers([leader])
        new_leader = cluster.leader(among=[watched, survivor])
        dead_row = page.locator(f'#peer-rows tr[data-raft="{leader.raft}"]')
        expect(dead_row).to_have_class(re.compile(r"\bis-down\b"))
        expect(dead_row.locator(".badge.down")).to_have_text("down")
        expect(page.locator("#peer-rows .badge.leader")).to_have_count(1)
        expect(page.locator(f'#peer-rows tr.is-leader[data-raft="{new_leader.raft}"]')).to_have_count(1)
        expect(page.locator("#quorum")).to_have_text(re.compile(r"^One more failure loses the majority: 2 of 3"))
        expect(page.locator(f'#node-cards article.node[data-url="{leader.url}"]')).to_have_class(
            re.compile(r"\bis-stale\b"))
        expect(page.locator('#node-cards .badge.leader')).to_have_count(1)
        expect(page.locator(f'#node-cards article.node[data-url="{new_leader.url}"] .badge.leader')).to_have_count(1)
        expect(page.locator('#node-cards [data-action="remove-node"]')).to_have_count(1)  # the dead one's
        page.screenshot(path=os.path.join(artifacts, "leader-killed.png"), full_page=True)

        cluster.local.kill_peers([watched])
        expect(page.locator("#failover")).to_contain_text(f"moving to {survivor.url}")
        page.wait_for_url(re.compile(re.escape(survivor.url) + r"/ui"), timeout=30_000)
        expect(page).to_have_url(survivor.url + "/ui")  # the handed-over token is out of the address
        expect(page.locator("#dashboard")).to_be_visible()
        expect(page.locator("#login")).to_be_hidden()
        expect(page.locator(f'#peer-rows tr[data-raft="{survivor.raft}"]')).to_contain_text("this peer")
        expect(page.locator("#quorum")).to_have_text(re.compile(r"^No majority: 1 of 3"))
        page.screenshot(path=os.path.join(artifacts, "moved-to-live-peer.png"), full_page=True)
    # A killed peer's page loads fail; only errors of the page's own code count.
    assert not [p for p in page.problems if p.startswith("uncaught")], page.problems

"""DELETE /v1/sandboxes/{id} while that id is still being created
(docs/agent-api.md): the delete wins. It waits for the create to give up,
answers 204 once nothing of the sandbox is left, and the create's caller gets
409 "deleted while it was being created". conftest's leak check proves nothing
stays on the host (mounts, cgroups, runc state, processes, files)."""

import threading

from conftest import rand_suffix


def create_in_thread(client, sid, out):
    def run():
        out["r"] = client.post("/v1/sandboxes", {"id": sid, "template": "host", "timeout": 600})
    t = threading.Thread(target=run)
    t.start()
    return t


def delete_as_soon_as_known(client, sid, create_thread):
    """DELETE until the agent knows the id (404 before the create reserved
    it); returns the first answer that is not 404, or the last 404 when the
    create ended (failed) before any DELETE saw it."""
    r = None
    while True:
        r = client.delete(f"/v1/sandboxes/{sid}", timeout=120)
        if r.status != 404 or not create_thread.is_alive():
            return r


def test_delete_racing_create_leaves_nothing(client):
    raced = 0
    for i in range(12):
        sid = f"race-{rand_suffix(6)}-{i}"
        out = {}
        t = create_in_thread(client, sid, out)
        d = delete_as_soon_as_known(client, sid, t)
        t.join(120)
        assert not t.is_alive(), "the create never answered"
        c = out["r"]
        if c.status == 201:
            # The create finished first: the DELETE then removed a running sandbox.
            if d.status == 404:  # it saw nothing before the create reserved the id
                assert client.delete(f"/v1/sandboxes/{sid}").status == 204
            else:
                assert d.status == 204, d
        else:
            # The DELETE came during the create: it won.
            assert c.status == 409, c
            assert "deleted while it was being created" in c.json()["message"], c
            assert d.status == 204, f"DELETE during create -> {d}"
            raced += 1
        assert client.get(f"/v1/sandboxes/{sid}").status == 404
        assert sid not in client.list_ids()
        if raced >= 3:
            break
    # A create takes tens of milliseconds at least (runc run, init ready),
    # while the DELETE loop polls without pause: the race is hit.
    assert raced >= 1, "no DELETE ever arrived during a create"


def test_second_delete_during_delete_waits_for_it(client):
    """Two DELETEs of one sandbox: both answer 204 (the second waits for the
    first rather than answering 404 while the teardown still runs)."""
    sid = client.create(timeout=600)["id"]
    out = {}

    def run():
        out["r"] = client.delete(f"/v1/sandboxes/{sid}")
    t = threading.Thread(target=run)
    t.start()
    r2 = client.delete(f"/v1/sandboxes/{sid}")
    t.join(120)
    statuses = sorted([out["r"].status, r2.status])
    # The second may also come after the first finished: then 404 is right.
    assert statuses in ([204, 204], [204, 404]), statuses
    assert client.get(f"/v1/sandboxes/{sid}").status == 404


def test_delete_of_unknown_id_is_still_404(client):
    r = client.delete(f"/v1/sandboxes/never-{rand_suffix(6)}")
    assert r.status == 404

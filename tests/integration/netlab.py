"""The network lab's fixtures, for every module that uses test_network.Lab
(test_network.py, test_egress_dns.py, tests/security/test_attack_network.py):
`lab = lab_fixture(cls, setup)` builds the lab once per module (and tears down
what was built when the build or setup fails), `net` is its agent's client."""

import pytest


def lab_fixture(cls, setup=None):
    """A module-scoped `lab` fixture: cls(templates_dir) built, then setup(lab)."""

    @pytest.fixture(scope="module")
    def lab(templates_dir, agent):
        lab = cls(templates_dir)
        try:
            lab.build()
            if setup:
                setup(lab)
        except BaseException:
            lab.destroy()
            raise
        yield lab
        lab.destroy()

    return lab


@pytest.fixture
def net(lab):
    return lab.agent.client

# Copyright 2026 The tipsv2_ros Authors. Licensed under the Apache License, Version 2.0.
"""The node's security surface: its SROS2 policy covers what it uses, unsafe caches refused."""
import pathlib
import xml.etree.ElementTree as ElementTree

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
POLICY = ROOT / 'config' / 'sros2_permissions.xml'


def _policy(namespace: str):
    """Return {(kind, access): fully qualified names} of the node's profile, in ``namespace``."""
    root = ElementTree.parse(POLICY).getroot()
    assert root.tag == 'policy' and root.get('version') == '0.2.0'
    (enclave,) = root.iter('enclave')
    (profile,) = enclave.iter('profile')
    assert enclave.get('path') == f'{profile.get("ns")}/{profile.get("node")}'
    node = profile.get('node')

    def qualify(name):
        if name.startswith('/'):
            return name
        if name.startswith('~/'):
            return f'{namespace}/{node}/{name[2:]}'
        return f'{namespace}/{name}'
    allowed = {}
    for group in profile:
        for access in ('publish', 'subscribe', 'reply', 'request'):
            if group.get(access) == 'ALLOW':
                allowed.setdefault((group.tag, access), set()).update(
                    qualify(child.text.strip()) for child in group)
    return node, allowed


@pytest.mark.ros
@pytest.mark.slow
def test_sros2_policy_allows_every_topic_and_service_of_the_node(ros, tiny_params):
    from ros_helpers import Client, NodeProcess
    namespace = '/sros_check'
    node, allowed = _policy(namespace)
    with NodeProcess({**tiny_params, 'publish_points': True}, namespace[1:]) as process:
        client = Client(namespace[1:], name='sros_check_client')
        try:
            assert client.wait_for_node(90), process.stop() or process.output
            assert client.spin_until(lambda: (node, namespace) in
                                     client.get_node_names_and_namespaces(), 30)
            client.spin_until(lambda: False, 1.0)  # the rest of its graph arrives
            queries = {('topics', 'publish'): client.get_publisher_names_and_types_by_node,
                       ('topics', 'subscribe'): client.get_subscriber_names_and_types_by_node,
                       ('services', 'reply'): client.get_service_names_and_types_by_node}
            used = {key: {name for name, _ in query(node, namespace)}
                    for key, query in queries.items()}
        finally:
            client.destroy_node()
    assert f'{namespace}/depth/image' in used[('topics', 'publish')]  # the query worked
    assert f'{namespace}/image' in used[('topics', 'subscribe')]
    assert f'{namespace}/set_labels' in used[('services', 'reply')]
    for key, names in used.items():
        missing = names - allowed.get(key, set())
        assert not missing, f'{POLICY.name} does not allow {key}: {sorted(missing)}'


@pytest.mark.ros
@pytest.mark.slow
def test_node_refuses_a_cache_folder_others_can_write(tiny_params, tmp_path):
    from ros_helpers import NodeProcess
    cache = tmp_path / 'engines'
    cache.mkdir()
    cache.chmod(0o777)
    with NodeProcess({**tiny_params, 'backend': 'onnxruntime',
                      'engine_cache_dir': str(cache)}, 'unsafe_cache') as process:
        code = process.proc.wait(120)
        process.stop()
    assert code == 1, process.output
    assert 'start-up failed' in process.output and 'writable by others' in process.output
    assert f'chmod 700 {cache}' in process.output and 'Traceback' not in process.output
    assert not list(cache.iterdir())  # nothing was exported into it

"""Helpers for the dashboard tests: read a rendered page (a small DOM on the standard library's
HTML parser), sign in through the form, read Set-Cookie attributes, make jobs and trials."""

from __future__ import annotations

from dataclasses import dataclass, field
from html.parser import HTMLParser
from http.cookies import SimpleCookie
from typing import Any
from urllib.parse import parse_qs, urlsplit

SESSION = "sparsearch_session"
#: The test server's cap on one owner's unfinished jobs.
ACTIVE_JOBS = 3
_VOID = {"area", "base", "br", "col", "embed", "hr", "img", "input", "link", "meta", "source"}


@dataclass
class Element:
    tag: str
    attrs: dict[str, str]
    children: list[Element | str] = field(default_factory=list)

    def text(self) -> str:
        """The element's text, entities decoded, runs of whitespace as one space."""
        parts: list[str] = []
        stack: list[Element | str] = [self]
        while stack:
            node = stack.pop()
            if isinstance(node, str):
                parts.append(node)
            else:
                stack.extend(reversed(node.children))
        return " ".join("".join(parts).split())

    def iter(self) -> Any:
        yield self
        for child in self.children:
            if isinstance(child, Element):
                yield from child.iter()

    def find_all(self, tag: str | None = None, **attrs: str | bool) -> list[Element]:
        """Descendants with ``tag`` and the given attributes (``True``: present; ``class_``
        matches one class; ``_`` in a name stands for ``-``)."""

        def matches(el: Element) -> bool:
            if tag is not None and el.tag != tag:
                return False
            for name, want in attrs.items():
                key = "class" if name == "class_" else name.replace("_", "-")
                if key not in el.attrs:
                    return False
                if key == "class" and want is not True:
                    if want not in el.attrs["class"].split():
                        return False
                elif want is not True and el.attrs[key] != want:
                    return False
            return True

        return [el for el in self.iter() if el is not self and matches(el)]

    def find(self, tag: str | None = None, **attrs: str | bool) -> Element:
        """The one descendant that matches (AssertionError when none or several)."""
        found = self.find_all(tag, **attrs)
        assert len(found) == 1, f"expected one <{tag or '*'} {attrs}>, found {len(found)}"
        return found[0]

    def by_id(self, element_id: str) -> Element:
        return self.find(id=element_id)


class _Builder(HTMLParser):
    def __init__(self) -> None:
        super().__init__(convert_charrefs=True)
        self.root = Element("#document", {})
        self.stack = [self.root]

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        element = Element(tag, {k: v or "" for k, v in attrs})
        self.stack[-1].children.append(element)
        if tag not in _VOID:
            self.stack.append(element)

    def handle_startendtag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        self.stack[-1].children.append(Element(tag, {k: v or "" for k, v in attrs}))

    def handle_endtag(self, tag: str) -> None:
        for i in range(len(self.stack) - 1, 0, -1):
            if self.stack[i].tag == tag:
                del self.stack[i:]
                return

    def handle_data(self, data: str) -> None:
        self.stack[-1].children.append(data)


def browser(app: Any, base_url: str = "http://testserver") -> Any:
    """A browser on ``app``: keeps cookies, shows each redirect instead of following it."""
    from fastapi.testclient import TestClient

    return TestClient(app, base_url=base_url, follow_redirects=False, raise_server_exceptions=False)


def page(response: Any) -> Element:
    """The HTML document of ``response`` (which must be an HTML page)."""
    assert response.headers["content-type"].startswith("text/html"), response.headers
    builder = _Builder()
    builder.feed(response.text)
    builder.close()
    return builder.root


def words(text: str) -> str:
    """``text`` with runs of whitespace as one space (as ``Element.text`` gives it)."""
    return " ".join(text.split())


def csrf_of(response: Any) -> str:
    """The CSRF field of the first form of a page."""
    return page(response).find_all("input", name="csrf")[0].attrs["value"]


def form_csrf(client: Any, path: str = "/") -> str:
    """The CSRF field of the forms on page ``path`` as this browser sees it now."""
    r = client.get(path)
    assert r.status_code == 200, (path, r.status_code)
    return csrf_of(r)


def sign_in(client: Any, token: str, next_path: str = "/") -> Any:
    """Sign in through the form (GET /login, then POST it back); the POST's response."""
    form = client.get("/login", params={"next": next_path})
    assert form.status_code == 200, form.status_code
    return client.post("/login", data={"token": token, "csrf": csrf_of(form), "next": next_path})


def location(response: Any) -> str:
    assert response.status_code == 303, (response.status_code, response.text[:300])
    return response.headers["location"]


def login_next(response: Any) -> str:
    """The ``next`` of a redirect to the sign-in page (AssertionError if it is none)."""
    url = urlsplit(location(response))
    assert url.path == "/login", location(response)
    return parse_qs(url.query)["next"][0]


def set_cookies(response: Any) -> dict[str, Any]:
    """The cookies a response sets, by name, as ``http.cookies`` morsels (their attributes)."""
    found: dict[str, Any] = {}
    for header in response.headers.get_list("set-cookie"):
        jar: SimpleCookie = SimpleCookie()
        jar.load(header)
        found.update(jar)
    return found


def queued_job(storage: Any, owner: str) -> str:
    """A job of ``owner`` that is queued (cancellable), with no trials."""
    from sparsearch.jobconfig import JobConfig

    cfg = JobConfig.create(dataset="digits", flash_bytes=24576, ram_bytes=6144, trials=3)
    return storage.create_job(dataset="digits", config=cfg.to_dict(), owner=owner).id


#: A point of the default space (one conv block of 8 channels) and what training left of it:
#: the block pruned to 5 channels.
POINT = {
    "n_blocks": 1,
    "b0_type": "conv",
    "b0_kernel": 3,
    "b0_channels": 8,
    "b0_down": "none",
    "input_scale": 1.0,
    "head_pool": "gap",
    "head_units": 0,
    "prune_method": "filter_norm",
}


def pruned_arch() -> Any:
    from sparsearch.space.spec import ArchSpec, BlockSpec

    return ArchSpec(input_shape=(1, 8, 8), num_classes=10, blocks=(BlockSpec("conv", 3, 5),))


def add_pruned_trial(storage: Any, job_id: str, index: int) -> None:
    """A completed trial ``index`` of ``job_id`` whose conv block went from 8 to 5 channels."""
    storage.add_trial(
        job_id,
        index,
        status="running",
        params=POINT,
        generator="Sobol",
        gen_seconds=0.1,
        estimates={"flash_bytes": 5000, "ram_bytes": 2000, "macs": 3000, "param_count": 60},
        feasible=True,
        pruning={"method": "filter_norm", "level": 0.4},
    )
    storage.finish_trial(
        job_id,
        index,
        status="completed",
        metrics={"accuracy": 0.8},
        train_seconds=1.0,
        effective_spec={"arch": pruned_arch().to_dict(), "pruning": {"method": "filter_norm"}},
        artifacts={"onnx": b"pruned-onnx"},
    )

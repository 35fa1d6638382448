"""Lists page across servers: with a small page size, clients that follow
`nextCursor` (the Python SDK here; the TypeScript survey does too) see
exactly what one page showed, in the same order."""

import asyncio

from mcp.client.client import Client

from conftest import BASE_SERVERS


async def every_page(url: str) -> dict:
    out: dict = {}
    async with Client(url, mode="legacy") as c:
        for key, fetch in (("tools", c.list_tools), ("prompts", c.list_prompts), ("resources", c.list_resources), ("resource_templates", c.list_resource_templates)):
            items, pages, cursor = [], 0, None
            while True:
                page = await fetch(cursor=cursor) if cursor else await fetch()
                items += [i.model_dump(mode="json", exclude_none=True, by_alias=True) for i in getattr(page, key)]
                pages += 1
                cursor = page.next_cursor
                if not cursor:
                    break
            out[key] = (items, pages)
    return out


def test_cursors_walk_every_list_across_servers(gateway):
    base = BASE_SERVERS(gateway.ports)
    one_page = asyncio.run(every_page(gateway.url))
    assert all(pages == 1 for _, pages in one_page.values())
    try:
        gateway.write_catalog_and_wait(base, "a catalog with pages of 3", list_page_size=3)
        paged = asyncio.run(every_page(gateway.url))
    finally:
        gateway.write_catalog_and_wait(base, "the base catalog back")
    for key, (items, pages) in paged.items():
        assert items == one_page[key][0], key
        assert pages == max(1, -(-len(items) // 3)), key
    tools = [t["name"] for t in paged["tools"][0]]
    assert any(n.startswith("echo__") for n in tools[:3]) and any(n.startswith("everything__") for n in tools[3:]), "pages span both servers"

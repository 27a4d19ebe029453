"""The command line of contacts: `vks-controller contact add|list|remove` (who is told of
escalations, rules 16, 17, and of agreements needed, rules 11, 12). The API's side is controller.api.escalations."""
from __future__ import annotations

import asyncio

from contract.vocab import ContactKind, words
from controller.api.escalations import ContactIn
from controller.store import escalations as esc_repo
from controller.store import registry
from controller.store import users as users_repo


def add_contact_parser(sub, parents) -> None:
    """Add `contact add|list|remove` to the CLI's subcommands."""
    c = sub.add_parser("contact", help="who is told of escalations (rules 16, 17)")
    csub = c.add_subparsers(dest="contact_command", required=True, metavar="ACTION")
    a = csub.add_parser("add", parents=parents,
                        help="add a technician, organiser or coordinator contact to an institution")
    a.add_argument("institution")
    a.add_argument("--kind", required=True, choices=words(ContactKind),
                   help="technician: told at step 1 (rule 16); organiser: at step 2 (rule 17); coordinator "
                        "(of a court): told when a hearing there needs its agreement or it is reset (rules 11, 12)")
    a.add_argument("--name", required=True)
    a.add_argument("--email")
    a.add_argument("--webhook", metavar="URL")
    a.add_argument("--user", help="a user of this controller")
    ls = csub.add_parser("list", parents=parents, help="list contacts (of one institution)")
    ls.add_argument("institution", nargs="?")
    rm = csub.add_parser("remove", parents=parents, help="remove a contact")
    rm.add_argument("id", type=int)


async def _contact_command(settings, args) -> list[str]:
    from controller.store.db import Database, utcnow
    from controller.store.migrate import migrate
    db = Database(settings.db)
    try:
        await migrate(db)
        now = utcnow()
        async with db.transaction() as conn:
            if args.contact_command == "add":
                data = ContactIn.model_validate({"kind": args.kind, "name": args.name, "email": args.email,
                                                 "webhook_url": args.webhook, "user": args.user})
                await registry.get_institution(conn, args.institution)
                user_id = (await users_repo.get_user(conn, data.user))["id"] if data.user else None
                c = await esc_repo.add_contact(conn, {"institution_id": args.institution, "kind": data.kind,
                                                      "name": data.name, "email": data.email,
                                                      "webhook_url": data.webhook_url, "user_id": user_id}, now)
                await users_repo.record(conn, "cli", "contact.create", f"institution:{args.institution}", now,
                                        {"contact_id": c["id"], "kind": data.kind, "name": data.name})
                return [str(c["id"])]
            if args.contact_command == "remove":
                c = await esc_repo.get_contact(conn, args.id)
                await esc_repo.delete_contact(conn, args.id)
                await users_repo.record(conn, "cli", "contact.delete", f"institution:{c['institution_id']}", now,
                                        {"contact_id": args.id})
                return []
            rows = await esc_repo.list_contacts(conn, [args.institution] if args.institution else None)
            return [f"{c['id']}\t{c['institution_id']}\t{c['kind']}\t{c['name']}\t{c['email'] or ''}\t"
                    f"{c['webhook_url'] or ''}" for c in rows]
    finally:
        await db.close()


def run_contact_command(settings, args) -> int:
    """Exit 0 and print the new id / the list; 2 with a message on bad input."""
    import sys

    from pydantic import ValidationError

    from controller.errors import ControllerError
    try:
        lines = asyncio.run(_contact_command(settings, args))
    except ValidationError as exc:
        e = exc.errors()[0]
        print(f"vks-controller: contact: {'.'.join(map(str, e['loc'])) or 'input'}: {e['msg']}", file=sys.stderr)
        return 2
    except ControllerError as exc:
        print(f"vks-controller: contact: {exc.message}", file=sys.stderr)
        return 2
    for line in lines:
        print(line)
    return 0

-- Portaal: the citizen portal's accounts, sessions and login events.
-- Runs as portaal_owner in one transaction; row counts come from estate.* settings.

create table accounts (
    id bigserial primary key,
    email text not null unique,
    weergavenaam text not null,
    rollen text[] not null default '{burger}',
    voorkeuren jsonb not null default '{}',
    aangemaakt_op timestamptz not null,
    laatst_gezien timestamptz
);
comment on table accounts is 'Accounts van inwoners en ondernemers (DigiD/eHerkenning gekoppeld)';

create table sessions (
    id uuid primary key default gen_random_uuid(),
    account_id bigint not null references accounts (id) on delete cascade,
    gestart_op timestamptz not null,
    verloopt_op timestamptz not null,
    gegevens jsonb not null default '{}'
);
create index sessions_account_id_idx on sessions (account_id);

-- An append-only log without a primary key, as many real estates have one.
create table login_events (
    account_id bigint,
    tijdstip timestamptz not null,
    ip inet,
    gelukt boolean not null
);
comment on table login_events is 'Inlogpogingen; bewust zonder primaire sleutel';

insert into accounts (email, weergavenaam, rollen, voorkeuren, aangemaakt_op, laatst_gezien)
select 'inwoner' || i || '@example.nl',
       (array['J. de Jong', 'A. Jansen', 'P. de Vries', 'Zoë Bakker', 'M. Yılmaz'])[1 + i % 5] || ' ' || i,
       case when i % 100 = 0 then '{burger,ondernemer}'::text[] else '{burger}'::text[] end,
       jsonb_build_object('taal', case when i % 10 = 0 then 'en' else 'nl' end, 'nieuwsbrief', i % 3 = 0),
       timestamptz '2017-05-01 12:00:00+02' + i * interval '31 minutes',
       case when i % 4 <> 0 then timestamptz '2024-01-01 00:00:00+01' + i * interval '3 minutes' end
from generate_series(1, current_setting('estate.accounts')::int) as i;

insert into sessions (id, account_id, gestart_op, verloopt_op, gegevens)
select md5('sessie-' || i)::uuid,
       1 + (i - 1) % current_setting('estate.accounts')::int,
       timestamptz '2024-06-01 00:00:00+02' + i * interval '1 minute',
       timestamptz '2024-06-01 00:30:00+02' + i * interval '1 minute',
       jsonb_build_object('ua', 'Mozilla/5.0', 'stappen', jsonb_build_array('login', 'overzicht', (array['zaken', 'belastingen', 'verhuizing'])[1 + i % 3]))
from generate_series(1, current_setting('estate.sessions')::int) as i;

insert into login_events (account_id, tijdstip, ip, gelukt)
select 1 + (i - 1) % greatest(current_setting('estate.accounts')::int, 1),
       timestamptz '2024-01-01 00:00:00+01' + i * interval '47 seconds',
       ('10.' || (i / 65536) % 256 || '.' || (i / 256) % 256 || '.' || i % 256)::inet,
       i % 11 <> 0
from generate_series(1, current_setting('estate.login_events')::int) as i;

grant usage on schema public to portaal_app;
grant select, insert, update, delete on all tables in schema public to portaal_app;
grant usage, select on all sequences in schema public to portaal_app;

-- Zaaksysteem: case management (cases and their status history).
-- Runs as zaaksysteem_owner in one transaction; row counts come from estate.* settings.

create type case_status as enum ('ontvangen', 'in_behandeling', 'opgeschort', 'afgehandeld', 'afgewezen');
comment on type case_status is 'Levensloop van een zaak';

create sequence zaaknummer_seq start 100000;

create table cases (
    id bigserial primary key,
    zaaknummer text not null unique default 'Z-' || lpad(nextval('zaaknummer_seq')::text, 8, '0'),
    zaaktype text not null,
    status case_status not null default 'ontvangen',
    onderwerp text not null,
    aanvrager_bsn char(9),
    metadata jsonb not null default '{}',
    created_at timestamptz not null default now(),
    updated_at timestamptz not null default now()
);
comment on table cases is 'Zaken: aanvragen, meldingen en bezwaren';
comment on column cases.zaaknummer is 'Uniek, uit zaaknummer_seq';

create table status_history (
    id bigserial primary key,
    case_id bigint not null references cases (id) on delete cascade,
    status case_status not null,
    changed_at timestamptz not null default now(),
    changed_by text not null default current_user
);
create index status_history_case_id_idx on status_history (case_id);

create function touch_updated_at() returns trigger language plpgsql as $$
begin
    new.updated_at := now();
    return new;
end
$$;

create function record_status_change() returns trigger language plpgsql as $$
begin
    insert into status_history (case_id, status) values (new.id, new.status);
    return new;
end
$$;
comment on function record_status_change() is 'Houdt de statushistorie bij bij iedere statuswijziging';

create function open_cases_of(bsn char(9)) returns setof cases language sql stable as $$
    select * from cases where aanvrager_bsn = bsn and status not in ('afgehandeld', 'afgewezen')
$$;

insert into cases (zaaktype, status, onderwerp, aanvrager_bsn, metadata, created_at, updated_at)
select (array['omgevingsvergunning', 'melding openbare ruimte', 'bezwaar WOZ', 'evenementenvergunning', 'parkeervergunning'])[1 + i % 5],
       (enum_range(null::case_status))[1 + i % 5],
       'Zaak ' || i || ': ' || md5(i::text),
       lpad((100000000 + (i * 13) % 1000000)::text, 9, '0'),
       jsonb_build_object('kanaal', (array['web', 'balie', 'post', 'telefoon'])[1 + i % 4], 'prioriteit', i % 3,
                          'labels', jsonb_build_array('wkd', 'jaar-' || (2015 + i % 10))),
       timestamptz '2015-01-01 08:00:00+01' + i * interval '41 minutes',
       timestamptz '2015-01-01 08:00:00+01' + i * interval '41 minutes' + (i % 90) * interval '1 day'
from generate_series(1, current_setting('estate.cases')::int) as i;

insert into status_history (case_id, status, changed_at, changed_by)
select 1 + (i - 1) % current_setting('estate.cases')::int,
       (enum_range(null::case_status))[1 + (i / greatest(current_setting('estate.cases')::int, 1)) % 5],
       timestamptz '2015-01-01 08:00:00+01' + i * interval '13 minutes',
       (array['behandelaar1', 'behandelaar2', 'systeem'])[1 + i % 3]
from generate_series(1, current_setting('estate.status_history')::int) as i;

-- After the bulk load, so that the history above is the generated one.
create trigger cases_touch_updated_at before update on cases
    for each row execute function touch_updated_at();
create trigger cases_record_status after update of status on cases
    for each row when (old.status is distinct from new.status) execute function record_status_change();

create materialized view case_counts as
    select zaaktype, status, count(*) as aantal from cases group by zaaktype, status;
create unique index case_counts_key on case_counts (zaaktype, status);
comment on materialized view case_counts is 'Aantallen per zaaktype en status, voor het dashboard';

grant usage on schema public to zaaksysteem_app;
grant select, insert, update, delete on all tables in schema public to zaaksysteem_app;
grant usage, select on all sequences in schema public to zaaksysteem_app;

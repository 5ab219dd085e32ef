-- Belastingen / WOZ: property value assessments.
-- Runs as belastingen_owner in one transaction; row counts come from estate.* settings.

create table assessments (
    id bigserial primary key,
    kadastrale_aanduiding text not null,
    eigenaar_bsn char(9) not null,
    peildatum date not null,
    waarde numeric(14, 2) not null check (waarde >= 0),
    belastingjaar smallint not null,
    vastgesteld_op timestamptz not null,
    bezwaar boolean not null default false
);
create index assessments_belastingjaar_idx on assessments (belastingjaar);
comment on table assessments is 'WOZ-beschikkingen';
comment on column assessments.waarde is 'WOZ-waarde in euro';

create function total_value(jaar smallint) returns numeric language sql stable as $$
    select coalesce(sum(waarde), 0) from assessments where belastingjaar = jaar
$$;

insert into assessments (kadastrale_aanduiding, eigenaar_bsn, peildatum, waarde, belastingjaar, vastgesteld_op, bezwaar)
select 'WKD00-' || chr(65 + i % 12) || '-' || (1 + i % 100000),
       lpad((100000000 + (i * 7) % 1000000)::text, 9, '0'),
       make_date(2018 + i % 7, 1, 1),
       round((150000 + (i::bigint * 7919) % 850000)::numeric + (i % 100) / 100.0, 2),
       (2019 + i % 7)::smallint,
       timestamptz '2019-02-28 09:00:00+01' + (i % 7) * interval '1 year' + (i % 1000) * interval '1 minute',
       i % 50 = 0
from generate_series(1, current_setting('estate.assessments')::int) as i;

grant usage on schema public to belastingen_app;
grant select, insert, update, delete on all tables in schema public to belastingen_app;
grant usage, select on all sequences in schema public to belastingen_app;

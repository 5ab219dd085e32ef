-- Belastingen / heffingen: tax payments, partitioned by tax year.
-- Runs as belastingen_owner in one transaction; row counts come from estate.* settings.

create table tax_kinds (
    code text primary key,
    omschrijving text not null
);
insert into tax_kinds values
    ('OZB', 'Onroerendezaakbelasting'),
    ('AFV', 'Afvalstoffenheffing'),
    ('RIO', 'Rioolheffing'),
    ('HOND', 'Hondenbelasting');

create table payments (
    id bigserial,
    belastingjaar smallint not null,
    heffing text not null references tax_kinds (code),
    bedrag numeric(12, 2) not null,
    betaald_op timestamptz not null,
    referentie text not null,
    primary key (id, belastingjaar)
) partition by range (belastingjaar);
comment on table payments is 'Ontvangen betalingen, per belastingjaar gepartitioneerd';
create table payments_2021 partition of payments for values from (2021) to (2022);
create table payments_2022 partition of payments for values from (2022) to (2023);
create table payments_2023 partition of payments for values from (2023) to (2024);
create table payments_2024 partition of payments for values from (2024) to (2025);
create table payments_2025 partition of payments for values from (2025) to (2026);
create table payments_overig partition of payments default;

insert into payments (belastingjaar, heffing, bedrag, betaald_op, referentie)
select (2020 + i % 7)::smallint,
       (array['OZB', 'AFV', 'RIO', 'HOND'])[1 + i % 4],
       round((20 + (i * 31) % 900)::numeric + (i % 100) / 100.0, 2),
       timestamptz '2020-03-01 00:00:00+01' + (i % 7) * interval '1 year' + (i % 20000) * interval '11 minutes',
       'BET-' || lpad(i::text, 10, '0')
from generate_series(1, current_setting('estate.payments')::int) as i;

grant usage on schema public to belastingen_app;
grant select, insert, update, delete on all tables in schema public to belastingen_app;
grant usage, select on all sequences in schema public to belastingen_app;

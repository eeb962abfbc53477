"""ISO 3166-1: the officially assigned country codes (249), and what a mistyped code probably meant.

Groups of countries are data under `policies/`; the list of codes they may use is the
standard itself. Policies use alpha-2 codes; the alpha-3 codes are kept only to say which alpha-2
code an alpha-3 one stands for.
"""

from __future__ import annotations

from types import MappingProxyType

# alpha-2 and alpha-3 of every officially assigned code, in alpha-2 order (from ISO 3166-1 as
# published by Debian's iso-codes)
_TABLE = """
    AD AND  AE ARE  AF AFG  AG ATG  AI AIA  AL ALB  AM ARM  AO AGO  AQ ATA  AR ARG  AS ASM  AT AUT
    AU AUS  AW ABW  AX ALA  AZ AZE  BA BIH  BB BRB  BD BGD  BE BEL  BF BFA  BG BGR  BH BHR  BI BDI
    BJ BEN  BL BLM  BM BMU  BN BRN  BO BOL  BQ BES  BR BRA  BS BHS  BT BTN  BV BVT  BW BWA  BY BLR
    BZ BLZ  CA CAN  CC CCK  CD COD  CF CAF  CG COG  CH CHE  CI CIV  CK COK  CL CHL  CM CMR  CN CHN
    CO COL  CR CRI  CU CUB  CV CPV  CW CUW  CX CXR  CY CYP  CZ CZE  DE DEU  DJ DJI  DK DNK  DM DMA
    DO DOM  DZ DZA  EC ECU  EE EST  EG EGY  EH ESH  ER ERI  ES ESP  ET ETH  FI FIN  FJ FJI  FK FLK
    FM FSM  FO FRO  FR FRA  GA GAB  GB GBR  GD GRD  GE GEO  GF GUF  GG GGY  GH GHA  GI GIB  GL GRL
    GM GMB  GN GIN  GP GLP  GQ GNQ  GR GRC  GS SGS  GT GTM  GU GUM  GW GNB  GY GUY  HK HKG  HM HMD
    HN HND  HR HRV  HT HTI  HU HUN  ID IDN  IE IRL  IL ISR  IM IMN  IN IND  IO IOT  IQ IRQ  IR IRN
    IS ISL  IT ITA  JE JEY  JM JAM  JO JOR  JP JPN  KE KEN  KG KGZ  KH KHM  KI KIR  KM COM  KN KNA
    KP PRK  KR KOR  KW KWT  KY CYM  KZ KAZ  LA LAO  LB LBN  LC LCA  LI LIE  LK LKA  LR LBR  LS LSO
    LT LTU  LU LUX  LV LVA  LY LBY  MA MAR  MC MCO  MD MDA  ME MNE  MF MAF  MG MDG  MH MHL  MK MKD
    ML MLI  MM MMR  MN MNG  MO MAC  MP MNP  MQ MTQ  MR MRT  MS MSR  MT MLT  MU MUS  MV MDV  MW MWI
    MX MEX  MY MYS  MZ MOZ  NA NAM  NC NCL  NE NER  NF NFK  NG NGA  NI NIC  NL NLD  NO NOR  NP NPL
    NR NRU  NU NIU  NZ NZL  OM OMN  PA PAN  PE PER  PF PYF  PG PNG  PH PHL  PK PAK  PL POL  PM SPM
    PN PCN  PR PRI  PS PSE  PT PRT  PW PLW  PY PRY  QA QAT  RE REU  RO ROU  RS SRB  RU RUS  RW RWA
    SA SAU  SB SLB  SC SYC  SD SDN  SE SWE  SG SGP  SH SHN  SI SVN  SJ SJM  SK SVK  SL SLE  SM SMR
    SN SEN  SO SOM  SR SUR  SS SSD  ST STP  SV SLV  SX SXM  SY SYR  SZ SWZ  TC TCA  TD TCD  TF ATF
    TG TGO  TH THA  TJ TJK  TK TKL  TL TLS  TM TKM  TN TUN  TO TON  TR TUR  TT TTO  TV TUV  TW TWN
    TZ TZA  UA UKR  UG UGA  UM UMI  US USA  UY URY  UZ UZB  VA VAT  VC VCT  VE VEN  VG VGB  VI VIR
    VN VNM  VU VUT  WF WLF  WS WSM  YE YEM  YT MYT  ZA ZAF  ZM ZMB  ZW ZWE
"""

_PAIRS = tuple(zip(_TABLE.split()[::2], _TABLE.split()[1::2], strict=True))

ISO_3166_ALPHA2: frozenset[str] = frozenset(alpha2 for alpha2, _ in _PAIRS)
ALPHA3_TO_ALPHA2 = MappingProxyType({alpha3: alpha2 for alpha2, alpha3 in _PAIRS})

# codes people write that ISO 3166-1 does not assign to the country they mean
_NOT_ISO = MappingProxyType(
    {
        "UK": ("GB", "UK is reserved in ISO 3166-1; the United Kingdom is GB"),
        "EL": ("GR", "EL is the EU's abbreviation for Greece; ISO 3166-1 uses GR"),
    }
)


def did_you_mean(code: str) -> str:
    """A hint to append to the error about `code`, which is not an alpha-2 code ('' if none)."""
    if code in _NOT_ISO:
        meant, why = _NOT_ISO[code]
        return f"; did you mean {meant!r}? ({why})"
    if code in ALPHA3_TO_ALPHA2:
        meant = ALPHA3_TO_ALPHA2[code]
        return f"; did you mean {meant!r}? ({code} is alpha-3; policies use alpha-2 codes)"
    return ""

"""Korean text of the ready tasks' descriptions (assets/tasks/*.json), by task id.
Class names and class descriptions stay English: they are what the model reads."""

from __future__ import annotations

TASK_DESCRIPTIONS_KO: dict[str, str] = {
    "brain-tumour-mri": (
        "축상면, 관상면 또는 시상면 MR 영상에서 흔한 뇌종양 세 가지를 정상 뇌(normal brain)와 "
        "구별합니다. 첫 과제로 적합합니다: 클래스마다 종괴가 위치하는 곳(뇌실질 내, 경막, "
        "터키안장)이 다릅니다."
    ),
    "breast-ultrasound": (
        "유방 초음파 영상을 양성 병변, 악성 병변, 정상 조직(normal tissue)으로 분류합니다. "
        "병변의 모양, 경계, 그리고 병변 후방에서 나타나는 변화가 대부분의 정보를 담고 있습니다."
    ),
    "chest-xray-covid": (
        "흉부 정면 방사선 사진에서 COVID-19 폐렴(covid-19 pneumonia), 기타 폐 음영(lung opacity), "
        "바이러스성 폐렴(viral pneumonia), 정상 폐를 구분합니다. 네 번째 클래스는 이 데이터 세트에 "
        "대한 논문의 4-클래스 버전을 따릅니다: 같은 연구팀의 COVID-19 Radiography Database와 "
        "마찬가지로, COVID-QU-Ex의 비COVID 감염을 바이러스성 폐렴과 기타 폐 음영으로 나눕니다. "
        "템플릿은 논문의 것이므로 모든 클래스가 'affected by COVID-19'로 읽힙니다."
    ),
    "colorectal-histology": (
        "대장암 슬라이드에서 얻은 작은 H&E 타일에서 여덟 가지 조직 유형을 인식합니다: 종양, "
        "두 종류의 기질, 면역세포, 괴사 잔해(debris), 정상 점막(normal mucosa), 지방, "
        "빈 배경(empty background)."
    ),
    "endoscopy-gi-tract": (
        "상부 및 하부 위장관 내시경에서 여덟 가지 소견과 해부학적 지표를 구분합니다: 정상 해부학적 "
        "지표, 절제 전후의 용종, 식도염, 궤양성 대장염(ulcerative colitis). 논문의 템플릿은 상부 "
        "위장관 클래스를 포함한 모든 클래스에 'in the colon'이라고 씁니다."
    ),
    "fundus-eye-disease": (
        "컬러 안저 사진에서 정상 눈과 백내장(cataract), 녹내장(glaucoma), "
        "당뇨망막병증(diabetic retinopathy)을 구별합니다. 백내장은 사진 전체를, 녹내장은 "
        "시신경유두를, 당뇨망막병증은 황반 주위의 망막을 변화시킵니다."
    ),
    "kidney-ct": (
        "신장 CT 단면을 낭종(cyst), 정상 신장(normal kidney), 결석(stone), 종양으로 분류합니다. "
        "핵심은 밀도입니다: 낭종은 물 밀도, 결석은 매우 밝은 고음영, 종양은 조영 증강되는 "
        "연부조직입니다."
    ),
    "knee-osteoarthritis-xray": (
        "정면 방사선 사진에서 무릎 골관절염을 Kellgren-Lawrence 5단계 등급, 즉 0(정상)부터 "
        "4(중증)까지로 판정합니다. 인접한 등급끼리는 비슷해 보이므로 어려운 과제라고 "
        "예상하십시오."
    ),
    "lung-colon-histology": (
        "폐와 대장의 H&E 조직 타일을 양성 조직 두 가지와 암 세 가지로 분류합니다. 먼저 장기를 "
        "구분하고(폐포 대 음와), 그다음 양성과 악성을 구분합니다."
    ),
    "retinal-oct": (
        "황반 OCT 단면 영상을 맥락막 신생혈관, 당뇨황반부종, 드루젠(drusen), 정상으로 "
        "분류합니다. 망막색소상피층의 선과 어두운 액체 공간을 살펴보십시오."
    ),
    "skin-lesions-dermoscopy": (
        "더모스코피 사진에서 흔한 색소성 및 비색소성 피부 병변 일곱 가지를 양성과 악성 모두 "
        "인식합니다. 실제로는 클래스 불균형이 매우 심합니다: 관찰되는 병변의 대부분은 모반입니다."
    ),
}
